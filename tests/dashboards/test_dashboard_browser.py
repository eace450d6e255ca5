"""The pages in a real browser: Debian's Chromium (headless, driven by Playwright) against the
real server (uvicorn) on the seeded PostgreSQL database.

Each test holds what a user would notice: figures that are drawn (with the stored data, from
this server only), a front point that opens its candidate, a submitted study that a worker runs,
export buttons whose files load back, a trials table paged by the server, a study page that
follows its study as trials land (without a reload), its CSV download, re-queue and delete.
A screenshot of each page goes to ``$NANOSD_NAS_TEST_ARTIFACTS`` (default: the session's
temporary folder, ``screenshots/``).
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import optuna
import pytest
import yaml
from dashboard_support import SEEDED, LiveServer, Seeded, quick_document
from playwright.sync_api import Browser, Page, sync_playwright

from nanosd_nas import latency_models, spaces
from nanosd_nas.dashboards import Settings
from nanosd_nas.latency_models import (
    CalibrationPlan,
    Device,
    DeviceRegistry,
    FileLatencyStore,
    LocalProfiler,
    Protocol,
)
from nanosd_nas.search import StudyRunner, rescore_study
from nanosd_nas.search._worker import StudyWorker
from nanosd_nas.search.store import Store

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
PAGED = "browser-paged"
PAGED_TRIALS = 60
PAGE_SIZE = 50  # the study page's table
SUBMITTED = "browser-submitted"
SINGLE = "browser-single"
#: A second local device the seeded study is rescored for: two intra-op threads.
OTHER = "browser-two-threads"
OTHER_PROTOCOL = Protocol(threads=2, warmup=0, runs=3)
#: Plotly draws, a page loads: generous for a loaded 2-core machine.
WAIT_MS = 60_000
#: An ONNX export builds the model, exports three components and checks each in ONNX Runtime.
EXPORT_MS = 600_000


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(seeded_postgres: Seeded) -> Iterator[Store]:
    """The test's own connection to the database the server reads."""
    with Store.open(seeded_postgres.url) as opened:
        yield opened


@pytest.fixture(scope="module")
def paged_study(store: Store) -> str:
    """A second study, with more trials than one page of the table holds."""
    store.upsert_device(DeviceRegistry().get("local-cpu"))
    store.create_study(PAGED, quick_document(PAGED, trials=PAGED_TRIALS), device="local-cpu")
    summary = StudyRunner(store, PAGED).run()
    assert summary.complete == PAGED_TRIALS
    return PAGED


@pytest.fixture(scope="module")
def rescored(store: Store, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The seeded study rescored for a second local device, whose predictor comes from a tiny
    real calibration made on this host (so that the rescoring loads it)."""
    DeviceRegistry().add(Device(name=OTHER, kind="local", protocol=OTHER_PROTOCOL))
    store.upsert_device(DeviceRegistry().get(OTHER))
    files = FileLatencyStore(home=tmp_path_factory.mktemp("other-device"))
    profiler = LocalProfiler(device=OTHER, protocol=OTHER_PROTOCOL, references=files)
    plan = CalibrationPlan(initial=4, rounds=0, per_round=0, held_out=0)
    store.save_predictor(latency_models.calibrate(spaces.load_space("nanosd"), "mini", profiler,
                                                  plan=plan, store=files).predictor)
    assert rescore_study(store, SEEDED, OTHER).source.action == "loaded"
    return OTHER


@pytest.fixture(scope="module")
def server(seeded_postgres: Seeded, paged_study: str) -> Iterator[LiveServer]:
    with LiveServer(Settings(database_url=seeded_postgres.url)) as live:
        yield live


@pytest.fixture(scope="module")
def api(server: LiveServer) -> Iterator[httpx.Client]:
    """The server's API, to compare the pages with what is stored."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests leave a screenshot of each page."""
    folder = Path(os.environ.get("NANOSD_NAS_TEST_ARTIFACTS")
                  or tmp_path_factory.getbasetemp() / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(tab: Tab, artifacts: Path, name: str) -> None:
    """The page as the user sees it, written to ``artifacts/NAME.png``."""
    path = artifacts / f"{name}.png"
    tab.page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, shared by the module's tests."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield launched
        launched.close()


@dataclass
class Tab:
    """A page of a fresh browser context, with every URL it requested and every script
    error it raised."""

    page: Page
    origin: str
    requested: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def open(self, path: str) -> None:
        response = self.page.goto(self.origin + path, wait_until="load", timeout=WAIT_MS)
        assert response is not None and response.ok, f"{path}: {response and response.status}"

    def foreign(self) -> list[str]:
        """Requests that went anywhere but the test server."""
        return [url for url in self.requested
                if not (url.startswith(self.origin + "/") or url.startswith(("data:", "blob:")))]

    def figure(self, selector: str) -> dict[str, Any]:
        """Once Plotly has drawn ``selector``: its traces' names, types and point counts, the
        points themselves, and whether a plot surface exists."""
        self.page.wait_for_selector(f'{selector}[data-ready="1"]', state="attached",
                                    timeout=WAIT_MS)
        figure: dict[str, Any] = self.page.eval_on_selector(selector, """element => ({
            traces: element.data.map(t => ({
                name: t.name, type: t.type,
                x: Array.from(t.x || []), y: Array.from(t.y || []),
                z: Array.from(t.z || []),
                customdata: Array.from(t.customdata || []),
            })),
            drawn: element.querySelector('.main-svg') !== null,
            gl: element.querySelector('canvas') !== null,
        })""")
        return figure


@pytest.fixture
def tab(browser: Browser, server: LiveServer) -> Iterator[Tab]:
    """A fresh context (no cookies, no cache) on the test server, downloads allowed."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                  accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    opened = Tab(page, server.url)
    context.on("request", lambda request: opened.requested.append(request.url))
    page.on("pageerror", lambda error: opened.errors.append(str(error)))
    yield opened
    context.close()


@pytest.fixture(scope="module")
def front(api: httpx.Client) -> dict[str, Any]:
    """The seeded study's stored front, as the API gives it."""
    response = api.get(f"/api/studies/{SEEDED}/front")
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    assert document["front"], "the seeded study has an empty front"
    return document


def smallest_member(front: dict[str, Any]) -> dict[str, Any]:
    """The front member with the fewest parameters (the quickest to export)."""
    member: dict[str, Any] = min(front["front"],
                                 key=lambda m: m["objectives"]["params_m"]["value"])
    return member


def points(trace: dict[str, Any]) -> int:
    return len(trace["x"])


def by_name(figure: dict[str, Any], prefix: str) -> dict[str, Any]:
    found = [t for t in figure["traces"] if (t["name"] or "").startswith(prefix)]
    assert len(found) == 1, f"no single trace named {prefix}...: {figure['traces']}"
    return found[0]


def table_rows(tab: Tab, selector: str) -> list[list[str]]:
    rows: list[list[str]] = tab.page.eval_on_selector_all(
        f"{selector} tr:has(td)",
        "rows => rows.map(r => Array.from(r.cells).map(c => c.textContent.trim()))")
    return rows


# -- 1. every page draws its figures ---------------------------------------------------------
def test_study_page_draws_the_stored_front_in_2d_3d_and_history(
        tab: Tab, front: dict[str, Any], api: httpx.Client, artifacts: Path) -> None:
    """The study page draws the 2-D front (its front trace holds exactly the stored front, at
    the stored values), the 3-D front and the hypervolume history, with no script error and
    nothing fetched from another host."""
    tab.open(f"/studies/{SEEDED}")
    front2d = tab.figure("#front2d")
    assert front2d["drawn"]
    shown = by_name(front2d, "Pareto front")
    members = front["front"]
    assert points(shown) == len(members)
    x, y = "latency_ms", "fidelity"  # the page's default axes for this study
    assert tab.page.eval_on_selector("#front2d", "e => e._fullLayout.xaxis.title.text") == x
    stored = sorted((m["objectives"][x]["value"], m["objectives"][y]["value"])
                    for m in members)
    drawn = sorted(zip(shown["x"], shown["y"], strict=True))
    assert [c for p in drawn for c in p] == pytest.approx([c for p in stored for c in p])
    assert sorted(shown["customdata"]) == sorted(
        f"/studies/{SEEDED}/trials/{m['number']}" for m in members)

    front3d = tab.figure("#front3d")
    assert front3d["drawn"]
    assert front3d["gl"], "the 3-D scene has no WebGL canvas"
    shown3d = by_name(front3d, "Pareto front")
    assert shown3d["type"] == "scatter3d" and points(shown3d) == len(members)
    assert len(shown3d["z"]) == len(members)

    history = tab.figure("#history")
    assert history["drawn"]
    stored_history = api.get(f"/api/studies/{SEEDED}/hypervolume").json()
    searched = [h["hypervolume"] for h in stored_history if h["phase"] == "search"]
    measured = [h["hypervolume"] for h in stored_history if h["phase"] == "verify"]
    assert searched and measured  # the seeded study's front was measured after its search
    assert by_name(history, "as trials landed")["y"] == pytest.approx(searched)
    # The measuring is its own series, joined to the search's last point, and labelled.
    assert by_name(history, "front measured on the device")["y"] == pytest.approx(
        searched[-1:] + measured)
    assert tab.page.locator("#history .annotation-text").first.text_content() == (
        "front's latency measured, not predicted")
    for view in ("#parcoords", "#importances", "#timeline"):
        assert tab.figure(view)["drawn"], view
    screenshot(tab, artifacts, "study")

    assert tab.errors == []
    assert tab.foreign() == []
    assert any(url.endswith("/static/plotly.min.js") for url in tab.requested)


def test_candidate_page_draws_block_latencies(tab: Tab, front: dict[str, Any],
                                              artifacts: Path) -> None:
    """A front member's page shows its values, stages and components, and draws one latency
    bar per block of its architecture."""
    member = smallest_member(front)
    tab.open(f"/studies/{SEEDED}/trials/{member['number']}")
    assert tab.page.text_content("#number") == str(member["number"])
    assert "on the Pareto front" in (tab.page.text_content("main") or "")
    values = table_rows(tab, "#values")
    assert {row[0] for row in values} >= {"fidelity", "latency_ms", "params_m"}
    assert table_rows(tab, "#stages") and table_rows(tab, "#components")
    blocks = tab.figure("#blocks")
    assert blocks["drawn"]
    bars = [t for t in blocks["traces"] if t["type"] == "bar"]
    assert bars and sum(points(t) for t in bars) > 0
    assert all(v > 0 for t in bars for v in t["x"])
    screenshot(tab, artifacts, "candidate")
    assert tab.errors == []
    assert tab.foreign() == []


def test_devices_page_draws_each_predictors_calibration(tab: Tab, api: httpx.Client,
                                                        artifacts: Path) -> None:
    """The devices page draws, for the predictor the seeded study calibrated, its held-out
    members and the seeded study's measured front members predicted against measured, with
    the ±10% band."""
    tab.open("/devices")
    plots = tab.page.query_selector_all("div.calibration")
    assert plots, "no calibration plot on the devices page"
    in_study = 0
    for plot in plots:
        figure = tab.figure(f"#{plot.get_attribute('id')}")
        assert figure["drawn"]
        held_out = by_name(figure, "held-out members")
        assert points(held_out) > 0
        assert all(math.isfinite(v) and v > 0 for v in held_out["x"] + held_out["y"])
        band = by_name(figure, "+10%")
        assert band["y"][-1] == pytest.approx(1.1 * band["x"][-1])
        trials = by_name(figure, "trials of studies")
        in_study += points(trials)
    # Every member of the seeded study's front had its latency predicted, then measured.
    members = api.get(f"/api/studies/{SEEDED}/front").json()["front"]
    assert in_study >= len(members) > 0
    screenshot(tab, artifacts, "devices")
    # nanosd's VAE is the same in every member: the U-Net's accuracy leads, the pipeline's beside
    tables = tab.page.query_selector_all("table.held-out")
    assert len(tables) == len(plots)
    for table in tables:
        assert [cell.inner_text() for cell in table.query_selector_all("td:first-child")] == [
            "unet", "pipeline"]
    assert "vae_encoder, vae_decoder are the same in every member of nanosd" in \
        tab.page.inner_text("main")
    assert tab.errors == []
    assert tab.foreign() == []


def test_compare_page_draws_each_chosen_front(tab: Tab, front: dict[str, Any],
                                              artifacts: Path) -> None:
    """The compare page draws one line per chosen study through its stored front."""
    tab.open(f"/compare?study={SEEDED}&study={PAGED}&x=params_m&y=latency_ms")
    figure = tab.figure("#fronts")
    assert figure["drawn"]
    assert [t["name"] for t in figure["traces"]] == [SEEDED, PAGED]
    seeded = by_name(figure, SEEDED)
    assert points(seeded) == len(front["front"])
    assert seeded["x"] == sorted(seeded["x"])
    tab.open(f"/compare?study={SEEDED}&x=latency_ms&y=fidelity")
    figure = tab.figure("#fronts")
    assert points(by_name(figure, SEEDED)) == len(front["front"])
    screenshot(tab, artifacts, "compare")
    assert tab.errors == []
    assert tab.foreign() == []


def test_compare_page_draws_a_rescored_studys_front_on_each_device(
        tab: Tab, api: httpx.Client, rescored: str) -> None:
    """Beside the studies' fronts, the compare page draws a rescored study's front on each
    device, one line per device through that device's front; a study never rescored gets no
    such plot."""
    fronts = api.get(f"/api/studies/{SEEDED}/fronts").json()["fronts"]
    assert [(f["device"], f["own"]) for f in fronts] == [("local-cpu", True), (rescored, False)]
    tab.open(f"/compare?study={SEEDED}&study={PAGED}&x=latency_ms&y=params_m")
    assert [t["name"] for t in tab.figure("#fronts")["traces"]] == [SEEDED, PAGED]
    assert len(tab.page.query_selector_all("div.devices")) == 1  # the paged study has none
    figure = tab.figure("#devices-0")
    assert figure["drawn"]
    assert [t["name"] for t in figure["traces"]] == [f"{SEEDED} on local-cpu",
                                                     f"{SEEDED} on {rescored}"]
    for trace, front in zip(figure["traces"], fronts, strict=True):
        assert front["front"] and points(trace) == len(front["front"])
        assert trace["x"] == sorted(trace["x"])
        assert trace["x"] == pytest.approx(sorted(
            m["objectives"]["latency_ms"]["value"] for m in front["front"]))
    assert {m["objectives"]["latency_ms"]["provenance"] for m in fronts[1]["front"]} == {
        "predicted"}
    tab.open(f"/compare?study={PAGED}&x=params_m&y=macs_g")
    tab.figure("#fronts")
    assert tab.page.query_selector_all("div.devices") == []
    assert tab.errors == []
    assert tab.foreign() == []


# -- 2. a front point opens its candidate ----------------------------------------------------
def test_clicking_a_front_point_opens_that_candidate(tab: Tab, front: dict[str, Any]) -> None:
    """A mouse click on a front point of the 2-D plot opens that trial's candidate page."""
    tab.open(f"/studies/{SEEDED}")
    tab.figure("#front2d")
    tab.page.locator("#front2d").scroll_into_view_if_needed()
    # Every point's pixel, and the front point farthest from any other trial's point.
    target: dict[str, Any] = tab.page.eval_on_selector("#front2d", """element => {
        const layout = element._fullLayout, box = element.getBoundingClientRect();
        const pixel = (t, i) => [
            box.left + layout.xaxis._offset + layout.xaxis.l2p(t.x[i]),
            box.top + layout.yaxis._offset + layout.yaxis.l2p(t.y[i])];
        const front = element.data.find(t => t.name.startsWith('Pareto front'));
        const others = [];
        element.data.filter(t => !t.name.startsWith('Pareto front') &&
                                 !t.name.startsWith('front, latency measured'))
            .forEach(t => t.x.forEach((_, i) => others.push(pixel(t, i))));
        let best = null;
        front.x.forEach((_, i) => {
            const [x, y] = pixel(front, i);
            const gap = Math.min(Infinity, ...others.map(([u, v]) => Math.hypot(u - x, v - y)),
                ...front.x.map((_, j) => j === i ? Infinity :
                    Math.hypot(pixel(front, j)[0] - x, pixel(front, j)[1] - y)));
            if (best === null || gap > best.gap) {
                best = {x, y, gap, url: front.customdata[i]};
            }
        });
        return best;
    }""")
    assert target["gap"] > 8, f"no front point stands clear of the others: {target}"
    match = re.fullmatch(rf"/studies/{SEEDED}/trials/(\d+)", target["url"])
    assert match, target
    number = int(match.group(1))
    assert number in {m["number"] for m in front["front"]}

    tab.page.mouse.move(target["x"], target["y"])
    tab.page.mouse.click(target["x"], target["y"])
    tab.page.wait_for_url(f"{tab.origin}/studies/{SEEDED}/trials/{number}", timeout=WAIT_MS)
    assert tab.page.text_content("#number") == str(number)
    assert "on the Pareto front" in (tab.page.text_content("main") or "")


# -- 3. the submit form ----------------------------------------------------------------------
def submit(tab: Tab, document: dict[str, Any]) -> None:
    """Type ``document`` as YAML into the studies page's form and send it."""
    tab.open("/")
    tab.page.fill("#document", yaml.safe_dump(document))
    tab.page.click("#submit button[type=submit]")


def test_submitted_study_is_queued_then_run_to_completion(
        tab: Tab, store: Store, api: httpx.Client) -> None:
    """A study submitted through the form is shown queued; after a worker runs it the page
    shows it completed with its trials in the table."""
    document = quick_document(SUBMITTED)
    submit(tab, document)
    tab.page.wait_for_url(f"{tab.origin}/studies/{SUBMITTED}", timeout=WAIT_MS)
    assert (tab.page.text_content("#status") or "").strip() == "queued"
    assert table_rows(tab, "#trials") == []

    outcomes = StudyWorker(store).serve(once=True)
    assert (SUBMITTED, "completed") in [(o.study, o.status) for o in outcomes]

    tab.page.reload(wait_until="load")
    assert (tab.page.text_content("#status") or "").strip() == "completed"
    rows = table_rows(tab, "#trials")
    assert len(rows) == document["n_trials"]
    assert all(row[1] == "complete" for row in rows)
    assert points(by_name(tab.figure("#front2d"), "Pareto front")) > 0
    assert tab.errors == []
    assert tab.foreign() == []
    assert SUBMITTED in {s["name"] for s in api.get("/api/studies").json()}


def test_single_objective_study_opens_on_its_page(
        tab: Tab, store: Store, api: httpx.Client) -> None:
    """A study with one objective (no 2-D front to draw) submitted through the form opens on
    its page, queued; once run, the page shows its trials and hypervolume history."""
    document = {**quick_document(SINGLE),
                "objectives": [{"name": "params_m", "direction": "minimize"}]}
    submit(tab, document)
    tab.page.wait_for_url(f"{tab.origin}/studies/{SINGLE}", timeout=WAIT_MS)
    assert (tab.page.text_content("#status") or "").strip() == "queued"

    outcomes = StudyWorker(store).serve(once=True)
    assert (SINGLE, "completed") in [(o.study, o.status) for o in outcomes]

    tab.page.reload(wait_until="load")
    assert (tab.page.text_content("#status") or "").strip() == "completed"
    assert len(table_rows(tab, "#trials")) == document["n_trials"]
    history = tab.figure("#history")["traces"][0]
    assert points(history) == len(api.get(f"/api/studies/{SINGLE}/hypervolume").json())
    assert max(history["x"]) == document["n_trials"]
    assert tab.page.locator("#front2d").count() == 0
    assert tab.errors == []


def test_malformed_document_names_the_field_and_creates_nothing(
        tab: Tab, api: httpx.Client) -> None:
    """A document with a bad field comes back with an error naming that field, the text the
    user typed kept, and no study created."""
    document = {**quick_document("browser-malformed"), "n_trials": "many"}
    text = yaml.safe_dump(document)
    submit(tab, document)
    error = tab.page.wait_for_selector("#form-error", timeout=WAIT_MS)
    assert error is not None and "n_trials" in (error.text_content() or "")
    assert tab.page.input_value("#document") == text
    assert tab.page.url == f"{tab.origin}/studies"
    assert "browser-malformed" not in {s["name"] for s in api.get("/api/studies").json()}
    assert api.get("/api/studies/browser-malformed").status_code == 404


# -- 4. exports ------------------------------------------------------------------------------
def test_spec_export_button_downloads_the_stored_architecture(
        tab: Tab, front: dict[str, Any], store: Store, tmp_path: Path) -> None:
    """The spec button downloads a spec.json that loads back as the stored architecture."""
    from nanosd_nas import spaces

    member = smallest_member(front)
    tab.open(f"/studies/{SEEDED}/trials/{member['number']}")
    with tab.page.expect_download(timeout=WAIT_MS) as info:
        tab.page.click('a.export[data-format="spec"]')
    download = info.value
    assert download.failure() is None
    assert download.suggested_filename.endswith(".json")
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    assert spaces.ArchSpec.from_file(path) == store.get_architecture(member["spec_id"])
    assert tab.foreign() == []


@pytest.mark.slow
def test_onnx_export_button_downloads_models_that_run(
        tab: Tab, front: dict[str, Any], tmp_path: Path) -> None:
    """The onnx button downloads a zip whose models run in ONNX Runtime on inputs of their
    declared shapes (the free axes at the spec's sizes) and give finite outputs."""
    import onnxruntime as ort

    member = smallest_member(front)
    tab.open(f"/studies/{SEEDED}/trials/{member['number']}")
    with tab.page.expect_download(timeout=EXPORT_MS) as info:
        tab.page.click('a.export[data-format="onnx"]')
    download = info.value
    assert download.failure() is None
    assert download.suggested_filename.endswith(".zip")
    archive = tmp_path / download.suggested_filename
    download.save_as(archive)
    folder = tmp_path / "onnx"
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(folder)
    models = sorted(p.name for p in folder.glob("*.onnx"))
    assert "unet.onnx" in models
    spec = spaces.ArchSpec.from_file(folder / "spec.json")
    sizes = {"latent_height": spec.latent_size, "latent_width": spec.latent_size,
             "height": spec.image_size, "width": spec.image_size}
    generator = np.random.default_rng(0)
    for name in models:
        session = ort.InferenceSession(str(folder / name), providers=["CPUExecutionProvider"])
        feeds = {i.name: random_input(i, generator, sizes) for i in session.get_inputs()}
        outputs = session.run(None, feeds)
        assert outputs, name
        for output in outputs:
            assert np.asarray(output).size > 0 and np.isfinite(output).all(), name


_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
           "tensor(double)": np.float64, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def random_input(spec: Any, generator: np.random.Generator,
                 sizes: dict[str, int]) -> np.ndarray:
    """Random values of an ONNX input's shape (a named free axis at ``sizes``' size, any other
    taken as 1) and type."""
    shape = [d if isinstance(d, int) and d > 0 else sizes.get(d, 1) for d in spec.shape]
    dtype = _DTYPES[spec.type]
    if np.issubdtype(dtype, np.integer):
        return generator.integers(0, 1000, size=shape).astype(dtype)
    return generator.standard_normal(shape).astype(dtype)


# -- 5. the trials table is paged by the server ----------------------------------------------
def test_trials_table_pages_on_the_server(tab: Tab, api: httpx.Client) -> None:
    """A study with more trials than a page shows 50 rows, the page count from the total, and
    the next page the rest; a filter's total (the server's) sets the page count."""
    tab.open(f"/studies/{PAGED}")
    heading = tab.page.text_content("h2:has-text('Trials')") or ""
    assert f"({PAGED_TRIALS})" in heading
    first = table_rows(tab, "#trials")
    assert [row[0] for row in first] == [str(n) for n in range(PAGE_SIZE)]
    pages = math.ceil(PAGED_TRIALS / PAGE_SIZE)
    assert f"page 1 of {pages}" in (tab.page.text_content("main") or "")
    assert tab.page.locator("#previous").count() == 0

    tab.page.click("#next")
    tab.page.wait_for_url(re.compile(r".*[?&]page=2(&|$)"))
    second = table_rows(tab, "#trials")
    assert [row[0] for row in second] == [str(n) for n in range(PAGE_SIZE, PAGED_TRIALS)]
    assert f"page 2 of {pages}" in (tab.page.text_content("main") or "")
    assert tab.page.locator("#next").count() == 0

    # A filter that keeps a little more than one page: the server counts what it keeps, and
    # the filter (typed with an exponent, '+' and all) holds on the next page too.
    listed = api.get(f"/api/studies/{PAGED}/trials", params={"limit": 500}).json()
    sizes = sorted(t["params_m"] for t in listed["trials"])
    bound = f"{sizes[PAGE_SIZE + 2]:.6e}"
    expected = api.get(f"/api/studies/{PAGED}/trials",
                       params={"range": f"params_m::{bound}", "limit": 1}).json()["total"]
    assert PAGE_SIZE < expected < PAGED_TRIALS
    tab.page.select_option("#filters select[name=range_name]", "params_m")
    tab.page.fill("#filters input[name=range_max]", bound)
    tab.page.click("#filters button[type=submit]")
    tab.page.wait_for_url(re.compile(r".*range_name=params_m.*"))
    assert f"Trials ({expected})" in (tab.page.text_content("main") or "")
    assert len(table_rows(tab, "#trials")) == PAGE_SIZE
    assert f"page 1 of {math.ceil(expected / PAGE_SIZE)}" in (
        tab.page.text_content("main") or "")
    tab.page.click("#next")
    tab.page.wait_for_url(re.compile(r".*[?&]page=2(&|$)"))
    assert f"Trials ({expected})" in (tab.page.text_content("main") or "")
    assert tab.page.input_value("#filters input[name=range_max]") == bound
    assert len(table_rows(tab, "#trials")) == expected - PAGE_SIZE
    assert tab.errors == []


# -- 6. a study page follows its study; re-queue, CSV download, delete -----------------------
LIVE = "browser-live"
LIVE_TRIALS = 4


def test_a_requeued_study_lands_on_its_page_live_then_downloads_and_is_deleted(
        tab: Tab, store: Store, api: httpx.Client, artifacts: Path, tmp_path: Path) -> None:
    """A stopped study is queued again from its page; while a worker runs it, the page (never
    reloaded) shows each trial landing, the study completed, and draws the parallel
    coordinates, the importances and the timeline of its trials; the CSV link downloads the
    filtered table; a completed study is not queued again (409); the Delete button removes it
    with its Optuna study."""
    store.create_study(LIVE, quick_document(LIVE, trials=LIVE_TRIALS), device="local-cpu")
    store.request_stop(LIVE)  # created, never run: stopped at once
    tab.open(f"/studies/{LIVE}")
    assert (tab.page.text_content("#status") or "").strip() == "stopped"
    assert tab.page.locator("#stop").count() == 0
    tab.page.click("#requeue")
    tab.page.wait_for_url(f"{tab.origin}/studies/{LIVE}")
    assert (tab.page.text_content("#status") or "").strip() == "queued"
    assert table_rows(tab, "#trials") == []
    tab.page.evaluate("window.notReloaded = true")

    outcomes = StudyWorker(store).serve(once=True)
    assert (LIVE, "completed") in [(o.study, o.status) for o in outcomes]
    tab.page.wait_for_function(
        "document.getElementById('status').textContent.trim() === 'completed'"
        f" && document.querySelectorAll('#trials tr:has(td)').length === {LIVE_TRIALS}",
        timeout=WAIT_MS)
    assert tab.page.evaluate("window.notReloaded") is True
    stored = api.get(f"/api/studies/{LIVE}/trials").json()["trials"]
    rows = table_rows(tab, "#trials")
    assert [(row[0], row[1], row[2]) for row in rows] == [
        (str(t["number"]), "complete", t["layout"]) for t in stored]
    assert f"{LIVE_TRIALS} complete" in (tab.page.text_content("#summary") or "")

    # The views, redrawn in place with every trial.
    parcoords = tab.page.eval_on_selector("#parcoords", """element => element.data[0]
        .dimensions.map(d => [d.label, Array.from(d.values).length])""")
    dimensions = sorted(store.list_trials(LIVE)[0].params)
    assert sorted(label for label, _ in parcoords) == sorted([*dimensions, "params_m",
                                                              "macs_g"])
    assert {n for _, n in parcoords} == {LIVE_TRIALS}
    found = api.get(f"/api/studies/{LIVE}/importances").json()["importances"]
    drawn = tab.page.eval_on_selector("#importances", """element => element.data.map(t =>
        [t.name, Array.from(t.y), Array.from(t.x)])""")
    assert [name for name, _, _ in drawn] == list(found)
    for name, y, x in drawn:
        assert dict(zip(y, x, strict=True)) == pytest.approx(found[name])
    timeline = tab.figure("#timeline")
    assert sum(points(t) for t in timeline["traces"]) == LIVE_TRIALS
    screenshot(tab, artifacts, "study-live")

    # The CSV link downloads the table as filtered.
    bound = sorted(t["params_m"] for t in stored)[LIVE_TRIALS // 2]
    tab.open(f"/studies/{LIVE}?range_name=params_m&range_max={bound}&sort=params_m"
             "&order=desc")
    with tab.page.expect_download(timeout=WAIT_MS) as info:
        tab.page.click("#csv")
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    downloaded = list(csv.DictReader(io.StringIO(path.read_text())))
    kept = sorted((t for t in stored if t["params_m"] <= bound), key=lambda t: -t["params_m"])
    assert [int(r["number"]) for r in downloaded] == [t["number"] for t in kept]
    assert [r["worker"] for r in downloaded] == [t["worker"] for t in kept]

    refused = api.post(f"/api/studies/{LIVE}/requeue")
    assert refused.status_code == 409 and "completed" in refused.json()["detail"]
    assert tab.page.locator("#requeue").count() == 0

    tab.page.once("dialog", lambda dialog: dialog.accept())
    tab.page.click("#delete")
    tab.page.wait_for_url(f"{tab.origin}/")
    assert LIVE not in (tab.page.text_content("#studies") or "")
    screenshot(tab, artifacts, "studies")
    assert api.get(f"/api/studies/{LIVE}").status_code == 404
    assert LIVE not in optuna.get_all_study_names(store.url)
    assert tab.errors == []
    assert tab.foreign() == []
