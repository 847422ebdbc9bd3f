"""Sealed records: lines and models the probe did not write are told from its own.

The probe side (:mod:`grader.run.kernel.seal`, run inside the kernel) and the
orchestrator side (:func:`grader.run.probe.read_records`, :func:`saved_model`) are run
against the probe's real :class:`Probe` on a stand-in Keras (``tests.test_kernel_probe``);
the forgeries are the ones a student's notebook can do with plain file writes.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from grader.run.kernel import seal as kernel_seal
from grader.run.kernel.probe import EVENTS_FILE, MODEL_FILE, Probe, wrapping
from grader.run.probe import (
    MSG_FORGED,
    MSG_MISSING,
    MSG_NOT_CLOSED,
    MSG_REMOVED,
    MSG_REPLACED,
    MSG_TAIL_REMOVED,
    read_records,
    saved_model,
    write_seal,
)
from tests.test_kernel_probe import KERAS, SETTINGS, Dataset, Model


def trained(folder: Path) -> bytes:
    """A run's folder after a probe compiled and fitted one model; the run's key."""
    key = write_seal(folder)
    probe, model = Probe({**SETTINGS, "dir": str(folder)}, KERAS, {}, kernel_seal), Model()
    assert not (folder / kernel_seal.SEAL_FILE).exists()  # read and gone before student code
    probe.mark(kernel_seal.INSTALLED)  # as install() does
    probe.compile(model, loss="mse")
    probe.fit(model, Dataset(100), epochs=1)
    return key


def append(folder: Path, entry: dict) -> None:
    with open(folder / EVENTS_FILE, "a") as fh:
        fh.write(json.dumps(entry) + "\n")


def test_the_probes_own_records_pass_and_carry_the_saved_models_digest(tmp_path: Path) -> None:
    key = trained(tmp_path)
    checked, messages = read_records(tmp_path, key)
    assert [r["event"] for r in checked.records] == ["probe_installed", "compile", "fit", "fit_end"]
    assert messages == [] and (checked.rejected, checked.missing) == (0, 0)
    assert not any(kernel_seal.SEAL_KEY in r or kernel_seal.SEQ_KEY in r for r in checked.records)
    assert checked.model_digest == kernel_seal.file_digest(str(tmp_path / MODEL_FILE))
    assert saved_model(tmp_path, checked.model_digest) == (tmp_path / MODEL_FILE, [])


def test_a_line_written_by_hand_is_ignored_and_named(tmp_path: Path) -> None:
    """The forgery from the issue: one ``fit`` line appended to the records file."""
    key = trained(tmp_path)
    genuine = json.loads((tmp_path / EVENTS_FILE).read_text().splitlines()[2])
    append(tmp_path, {"event": "fit", "model": {"class": "Functional", "name": "m"}})
    append(tmp_path, {**genuine, "epochs": 99})  # a real record, altered: its seal fails
    append(tmp_path, genuine)  # a real record, replayed: its number is used already
    append(tmp_path, {**genuine, "seal": "é"})  # not even a digest
    checked, messages = read_records(tmp_path, key)
    assert [r["event"] for r in checked.records] == ["probe_installed", "compile", "fit", "fit_end"]
    assert checked.rejected == 4
    assert messages == [
        "4 record(s) in the probe's folder were not written by the probe and were ignored"
    ]


def test_records_removed_from_the_file_are_counted(tmp_path: Path) -> None:
    key = trained(tmp_path)
    lines = (tmp_path / EVENTS_FILE).read_text().splitlines()
    (tmp_path / EVENTS_FILE).write_text("\n".join([lines[0], lines[1], lines[3]]) + "\n")
    checked, messages = read_records(tmp_path, key)
    assert [r["event"] for r in checked.records] == ["probe_installed", "compile", "fit_end"]
    assert (checked.rejected, checked.missing) == (0, 1)
    assert messages == [MSG_MISSING.format(count=1)]


def test_records_signed_with_another_runs_key_are_all_refused(tmp_path: Path) -> None:
    trained(tmp_path)
    checked, messages = read_records(tmp_path, b"k" * 32)
    assert checked.records == [] and checked.rejected == 4
    assert messages == [MSG_FORGED.format(count=4), MSG_REMOVED]
    assert kernel_seal.check(b"", [{"event": "fit", "seq": 1, "seal": ""}]).records == []


def test_without_its_key_the_probe_does_not_install(tmp_path: Path) -> None:
    """Rather than sign records no run accepts (and flag an honest student as forging),
    the probe fails to install: the row names that as grader's fault."""
    with pytest.raises(OSError):
        Probe({**SETTINGS, "dir": str(tmp_path)}, KERAS, {}, kernel_seal)


def test_records_removed_whole_are_named_once_the_probe_installed(tmp_path: Path) -> None:
    key = write_seal(tmp_path)
    assert read_records(tmp_path, key, installed=True)[1] == [MSG_REMOVED]
    assert read_records(tmp_path, key, installed=False)[1] == []  # it never ran: no records


def test_a_failed_save_leaves_the_earlier_model_measurable(tmp_path: Path) -> None:
    """A second fit whose save fails records no digest: the first model is still the one
    on disk and the one measured, and nobody is flagged."""
    key = write_seal(tmp_path)
    probe, model = Probe({**SETTINGS, "dir": str(tmp_path)}, KERAS, {}, kernel_seal), Model()
    probe.mark(kernel_seal.INSTALLED)
    probe.fit(model, Dataset(10), epochs=1)

    def full_disk(path: str) -> None:
        raise OSError(28, "No space left on device")

    model.save = full_disk  # type: ignore[method-assign]
    probe.fit(model, Dataset(10), epochs=1)
    checked, messages = read_records(tmp_path, key)
    assert checked.records[-1]["saved"].startswith("not saved: OSError")
    assert messages == [] and checked.model_digest is not None
    assert saved_model(tmp_path, checked.model_digest) == (tmp_path / MODEL_FILE, [])


def test_a_record_the_probe_could_not_write_leaves_no_gap(tmp_path: Path) -> None:
    key = write_seal(tmp_path)
    probe, model = Probe({**SETTINGS, "dir": str(tmp_path)}, KERAS, {}, kernel_seal), Model()
    probe.mark(kernel_seal.INSTALLED)
    probe.record("evaluate", model, metrics={"loop": float("nan")}, odd=[(1, 2)])
    probe.record("evaluate", model, bad={("a", 1): 1})  # a key JSON cannot write
    checked, messages = read_records(tmp_path, key)
    assert [r["event"] for r in checked.records] == ["probe_installed", "evaluate", "evaluate"]
    assert "probe_error" in checked.records[-1] and messages == []


def test_records_with_keys_json_turns_into_strings_still_pass(tmp_path: Path) -> None:
    """The seal signs the record as it will be read back: int keys become strings."""
    key = write_seal(tmp_path)
    seal = kernel_seal.sealer(str(tmp_path))
    line = json.dumps(seal({"event": "fit", "history": {10: [1.0], 2: [float("nan")], "a": 1}}))
    assert len(kernel_seal.check(key, [json.loads(line)]).records) == 1


def test_a_model_put_in_place_of_the_saved_one_is_not_measured(tmp_path: Path) -> None:
    key = trained(tmp_path)
    (tmp_path / MODEL_FILE).write_text("a model trained elsewhere")
    checked, _ = read_records(tmp_path, key)
    assert saved_model(tmp_path, checked.model_digest) == (None, [MSG_REPLACED])
    assert saved_model(tmp_path, None) == (None, [MSG_REPLACED])  # a model, no save recorded
    (tmp_path / MODEL_FILE).unlink()
    assert saved_model(tmp_path, checked.model_digest) == (None, [])


def test_the_canonical_text_is_the_same_after_a_round_trip_through_the_file() -> None:
    entry = {"b": [1.5, float("nan"), None], "a": "\udcff", "c": {"z": 1e-300, "y": (1, 2)}}
    assert kernel_seal.canonical(json.loads(json.dumps(entry))) == kernel_seal.canonical(entry)


def test_the_wrapped_method_keeps_its_signature_but_leaves_no_way_round_the_probe() -> None:
    def fit(self: object, x: object = None, epochs: int = 1) -> int:
        return epochs

    wrapper = wrapping(fit, lambda self, *a, **k: "probe")
    assert not hasattr(wrapper, "__wrapped__")
    assert inspect.signature(wrapper) == inspect.signature(fit)
    assert wrapper.__name__ == "fit" and wrapper(None) == "probe"


def test_forged_and_refuted_evidence_are_flagged_on_the_row(tmp_path: Path) -> None:
    import nbformat

    from grader.batch.pipeline import result_flags
    from grader.checks.facts import Facts
    from grader.intake.notebooks import Submission
    from grader.results import CheckResult
    from grader.rubric.schema import load_rubric
    from grader.run.execute import Execution
    from grader.static.evidence import StaticFacts
    from tests.conftest import RUBRIC

    nb = nbformat.v4.new_notebook()
    submission = Submission("s1", tmp_path / "s1.ipynb", "0" * 64, nb, [])
    run = Execution(nb=nb, root=tmp_path, evidence_forged=[MSG_REPLACED])
    facts, rubric = Facts(static=StaticFacts()), load_rubric(RUBRIC)
    refuted = CheckResult("base_frozen", False, 0, 2, message="", source="measured")
    assert result_flags(submission, run, facts, rubric) == ["evidence_forged", "no_training"]
    flags = result_flags(submission, Execution(nb=nb, root=tmp_path), facts, rubric, [refuted])
    assert flags == ["evidence_refuted", "no_training"]


def test_keras_own_trainer_methods_are_wrapped_too() -> None:
    """``TensorFlowTrainer.fit(model, ...)`` reached round ``keras.Model.fit``; and deleting
    the model class's own attribute does not unwrap it."""
    from grader.run.kernel.probe import wrap_everywhere

    class Trainer:
        def fit(self) -> str:
            return "trainer"

    class BackendTrainer(Trainer):
        def fit(self) -> str:
            return "backend"

    class Model(BackendTrainer):
        pass

    wrap_everywhere(Model, "fit", lambda self: "probe")
    model = Model()
    assert (model.fit(), BackendTrainer.fit(model), Trainer.fit(model)) == ("probe",) * 3
    del Model.fit
    assert model.fit() == "probe"
    assert object.__dict__.get("fit") is None


def closed(folder: Path) -> tuple[bytes, Probe]:
    """A trained run whose probe was installed the way the kernel installs it."""
    key = write_seal(folder)
    probe, model = Probe({**SETTINGS, "dir": str(folder)}, KERAS, {}, kernel_seal), Model()
    probe.mark(kernel_seal.INSTALLED)
    kernel_seal.CLOSING[:] = [lambda nonce: probe.mark(kernel_seal.CLOSED, nonce=nonce)]
    probe.compile(model, loss="mse")
    probe.fit(model, Dataset(100), epochs=1)
    return key, probe


def test_the_last_records_removed_are_seen_by_the_closing_record(tmp_path: Path) -> None:
    """Records cut from the end before the last cell leave a gap before its record; cut
    after it, its record is gone too. Either way the row says so."""
    key, _ = closed(tmp_path)
    events = tmp_path / EVENTS_FILE
    lines = events.read_text().splitlines()
    events.write_text("\n".join(lines[:2]) + "\n")  # the fit and its end cut away
    kernel_seal.close("n1")  # the injected last cell
    checked, messages = read_records(tmp_path, key, closed="closed", nonce="n1")
    assert checked.closed_with == "n1" and checked.missing == 2
    assert messages == [MSG_MISSING.format(count=2)]
    events.write_text("\n".join(lines[:2]) + "\n")  # and now the closing record too
    assert read_records(tmp_path, key, closed="closed", nonce="n1")[1] == [MSG_TAIL_REMOVED]


def test_an_early_close_does_not_stand_for_the_last_cell(tmp_path: Path) -> None:
    """The notebook calls the closing function itself, trains on, then cuts the records
    after its close: the closing record is not the run's (it lacks the last cell's nonce)."""
    key, probe = closed(tmp_path)
    kernel_seal.close("guessed")
    probe.fit(Model(), Dataset(10), epochs=1)
    events = tmp_path / EVENTS_FILE
    events.write_text("\n".join(events.read_text().splitlines()[:5]) + "\n")
    assert read_records(tmp_path, key, closed="closed", nonce="n2")[1] == [MSG_TAIL_REMOVED]


def test_a_whole_run_passes_and_a_closing_cell_that_failed_is_named_only_without_its_record(
    tmp_path: Path,
) -> None:
    key, _ = closed(tmp_path)
    assert read_records(tmp_path, key, closed=None)[1] == []  # the kernel died first: no claim
    assert read_records(tmp_path, key, closed="failed", nonce="n3")[1] == [MSG_NOT_CLOSED]
    kernel_seal.close("n3")
    checked, messages = read_records(tmp_path, key, closed="closed", nonce="n3")
    assert checked.closed_with == "n3" and messages == []
    assert [r["event"] for r in checked.records][-1] == kernel_seal.CLOSED
    # the record is there: a student's post-run hook that raised in that cell is no forgery
    assert read_records(tmp_path, key, closed="failed", nonce="n3")[1] == []
