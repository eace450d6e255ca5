"""The trained teacher: its data, its training recipe, its feature network, and the ground truth of
generation quality a student is measured by."""
