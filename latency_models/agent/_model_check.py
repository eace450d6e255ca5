"""What the agent checks in an uploaded model before onnxruntime ever sees it.

An upload comes from the network: the bytes are parsed as an ONNX ``ModelProto`` and refused
(:class:`InvalidModel`, one line saying why) when they

- do not parse as a ``ModelProto``;
- keep any tensor's data in an external file. A location in an uploaded model names a file of
  the agent's machine (``../../etc/hostname``), which a runtime may read (recent onnxruntime
  versions refuse paths that leave the working folder; a device may run an older one);
- use an operator domain other than the standard ones (:data:`STANDARD_DOMAINS`) or the model's
  own functions: the agent loads no custom operator libraries;
- declare fixed inputs larger than :data:`MAX_INPUT_ELEMENTS` elements, which the agent would
  have to allocate to run the model;
- fail ``onnx.checker.check_model`` (without ``full_check``): a malformed graph, a tensor whose
  stored data does not match its declared shape and type, an unknown opset.

The order matters: external data is refused before the checker runs, because the checker looks
at the files that a location names.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import onnx
from google.protobuf.message import DecodeError, Message

from ._timing import MAX_INPUT_ELEMENTS, InvalidModel

#: Operator domains the agent runs: ONNX, ONNX-ML and onnxruntime's own contrib operators.
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})


def check_onnx_upload(model: bytes) -> None:
    """Refuse ``model`` unless it is a self-contained ONNX model of standard operators.

    Raises:
        InvalidModel: what is wrong with the upload (see the module's docstring).
    """
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(model)
    except DecodeError as error:
        raise InvalidModel(f"not a loadable ONNX model: the bytes do not parse as an ONNX "
                           f"ModelProto ({error})") from None
    messages = list(_messages(proto))
    _refuse_external_data(messages)
    _check_domains(proto, messages)
    _check_input_sizes(proto.graph)
    try:
        onnx.checker.check_model(model)  # the bytes: no second serialisation of a large model
    except (onnx.checker.ValidationError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "invalid"
        raise InvalidModel(f"not a loadable ONNX model: the ONNX checker refuses it: "
                           f"{reason[:300]}") from None


def _messages(root: Message) -> Iterator[Message]:
    """Every message inside ``root``: subgraphs, functions, attributes, sparse tensors."""
    pending = [root]
    while pending:
        message = pending.pop()
        yield message
        for field, value in message.ListFields():
            if field.message_type is None:
                continue
            if isinstance(value, Message):
                pending.append(value)
            else:  # a repeated field of messages
                pending.extend(value)


def _refuse_external_data(messages: list[Message]) -> None:
    for tensor in messages:
        if not isinstance(tensor, onnx.TensorProto):
            continue
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            location = next((entry.value for entry in tensor.external_data
                             if entry.key == "location"), "")
            raise InvalidModel(f"tensor {tensor.name!r} keeps its data in an external file "
                               f"({location[:200]!r}); the agent measures self-contained "
                               "models only")


def _check_domains(proto: onnx.ModelProto, messages: list[Message]) -> None:
    own = {(function.domain, function.name) for function in proto.functions}
    own_domains = {domain for domain, _ in own}
    allowed = ", ".join(repr(domain) for domain in sorted(STANDARD_DOMAINS))
    for message in messages:
        if isinstance(message, onnx.OperatorSetIdProto):
            if message.domain not in STANDARD_DOMAINS | own_domains:
                raise InvalidModel(f"opset of domain {message.domain[:100]!r} is not one the "
                                   f"agent runs ({allowed})")
        elif isinstance(message, onnx.NodeProto):
            if message.domain in STANDARD_DOMAINS or (message.domain, message.op_type) in own:
                continue
            raise InvalidModel(f"operator {message.op_type[:100]!r} of domain "
                               f"{message.domain[:100]!r} is not one the agent runs "
                               f"({allowed}, or the model's own functions)")


def _check_input_sizes(graph: onnx.GraphProto) -> None:
    """Inputs whose shape is fixed must fit :data:`MAX_INPUT_ELEMENTS` together (dynamic
    dimensions are bounded when the request's shapes fill them in)."""
    constants = {tensor.name for tensor in graph.initializer}
    total = 0
    for value in graph.input:
        if value.name in constants or not value.type.tensor_type.HasField("shape"):
            continue
        dims = value.type.tensor_type.shape.dim
        if all(dim.HasField("dim_value") for dim in dims):
            total += math.prod(dim.dim_value for dim in dims)
        if total > MAX_INPUT_ELEMENTS:
            shape = [dim.dim_value if dim.HasField("dim_value") else dim.dim_param
                     for dim in dims]
            raise InvalidModel(f"input {value.name[:100]!r} of shape {shape} brings the "
                               f"model's inputs to {total} elements; the agent allocates at "
                               f"most {MAX_INPUT_ELEMENTS}")
