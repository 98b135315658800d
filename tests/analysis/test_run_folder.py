"""The run-folder reader: typed columns from a hand-made run, and one clear error per bad cell."""
from __future__ import annotations

import json
import math

import pytest

from manylora.analysis.run_folder import STEP_COLUMNS, RunFolderError, read_run
from manylora.engine.step_shape import STEP_SHAPE_FIELDS
from tests.analysis.runs import REQUEST_HEADER, TINY_REQUESTS, write_run


def test_reads_typed_columns(tmp_path):
    run = read_run(write_run(tmp_path / "run"))
    assert list(run.requests["request_id"]) == [0, 1, 2, 3, 4]
    assert run.requests["adapter_id"].tolist() == [0, 1, 0, 1, -1]
    assert math.isnan(run.requests.loc[3, "finish_s"])
    assert run.requests.loc[3, "reason"] == "deadline"
    assert run.requests["replica"].tolist() == [0, 1, 0, 1, 0]
    assert len(run.steps) == 5 and run.steps["duration_s"].sum() == pytest.approx(8.0)
    assert run.source == "engine"


def test_steps_carry_every_step_shape_field():
    assert set(STEP_SHAPE_FIELDS) <= set(STEP_COLUMNS)


def test_optional_columns_default_to_one_replica(tmp_path):
    header = REQUEST_HEADER.removesuffix(",preemptions,replica")
    rows = "\n".join(line.rsplit(",", 2)[0] for line in TINY_REQUESTS.splitlines()) + "\n"
    run = read_run(write_run(tmp_path / "run", rows, requests_header=header))
    assert run.requests["replica"].tolist() == [0] * 5
    assert run.requests["preemptions"].sum() == 0


def _with_cell(row: int, column: int, value: str) -> str:
    lines = TINY_REQUESTS.splitlines()
    cells = lines[row].split(",")
    cells[column] = value
    lines[row] = ",".join(cells)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("row, column, value, message", [
    (1, 1, "abc", "requests.csv row 3, column arrival_s: 'abc' is not a number"),
    (0, 2, "-2", "row 2, column adapter_id: '-2' is not an integer >= -1"),
    (2, 4, "2.5", "row 4, column output_len: '2.5' is not an integer"),
    (2, 5, "done", "row 4, column status: 'done' is not one of finished, aborted, rejected"),
    (0, 6, "oops", "row 2, column reason: 'oops' must be empty for a finished request"),
    (1, 0, "0", "row 3, column request_id: '0' is not greater than the previous row's"),
    (0, 9, "", "row 2, column finish_s: '' must be set for a finished request"),
    (1, 8, "0.5", "row 3, column first_token_s: '0.5' is earlier than the request's previous"),
    (0, 9, "0.5", "row 2, column finish_s: '0.5' is earlier than the request's previous"),
    (0, 10, "4", "row 2, column output_tokens: '4' exceeds output_len"),
    (3, 12, "x", "row 5, column replica: 'x' is not an integer >= 0"),
])
def test_bad_cell_names_file_row_column_value(tmp_path, row, column, value, message):
    folder = write_run(tmp_path / "run", _with_cell(row, column, value))
    with pytest.raises(RunFolderError, match="requests.csv") as info:
        read_run(folder)
    assert message in str(info.value)


def test_bad_step_cell(tmp_path):
    folder = write_run(tmp_path / "run", steps_rows="0,0,0.0,-1.0" + ",0" * 15 + "\n")
    with pytest.raises(RunFolderError, match=r"steps.csv row 2, column duration_s: '-1.0' is not a "
                                             r"number >= 0"):
        read_run(folder)


def test_missing_pieces(tmp_path):
    with pytest.raises(RunFolderError, match="no such directory"):
        read_run(tmp_path / "nope")
    folder = write_run(tmp_path / "run")
    (folder / "meta.json").write_text(json.dumps({"source": "magic"}))
    with pytest.raises(RunFolderError, match="key source: 'magic' is not one of engine, simulator"):
        read_run(folder)
    (folder / "meta.json").write_text("{")
    with pytest.raises(RunFolderError, match="meta.json: not valid JSON"):
        read_run(folder)
    folder = write_run(tmp_path / "run2", requests_header="request_id,arrival_s")
    with pytest.raises(RunFolderError, match="missing column.*adapter_id"):
        read_run(folder)
    (folder / "requests.csv").write_text("")
    with pytest.raises(RunFolderError, match="empty file"):
        read_run(folder)
    folder = write_run(tmp_path / "run3")
    (folder / "steps.csv").unlink()
    with pytest.raises(RunFolderError, match="steps.csv: missing file"):
        read_run(folder)
