"""The card's layout as users install it: the wheel's contents, the entry point, and `lm_eval --tasks
'val_*'` with no --include_path (after the README's install, and after `pip install` of the wheel)."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from val_probing.registration import (
    FOLDER,
    MANIFEST,
    TASK_FILES,
    RegistrationError,
    is_registered,
    lm_eval_tasks_folder,
    register,
    unregister,
)

REPO = Path(__file__).resolve().parents[1]
TASK_NAMES = {"val_document", "val_code", "val_database", "valprobing"}
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: int = 600):
    done = subprocess.run(
        cmd, cwd=cwd, env={**os.environ, **OFFLINE, **(env or {})}, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)], cwd=out)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("val_probing-*.whl")
    return path


# ------------------------------------------------------------------------------------------- the layout


def test_top_level_is_the_cards_layout() -> None:
    for name in ("pyproject.toml", "val_probing", "tasks_yaml", "training", "notebooks", "tests"):
        assert (REPO / name).exists(), name
    assert not (REPO / "src").exists()
    assert not (REPO / "val_probing" / "training").exists(), "IN2 synthesis lives in val_probing/in2"


def test_wheel_carries_tasks_recipes_configs_pools_and_stubs(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for task in (*TASK_FILES, "_default_template_yaml"):  # lm-eval's name for a shared base, no .yaml
        assert f"val_probing/tasks_yaml/{task}" in names
    assert "val_probing/training/recipes/in2_sft.py" in names
    configs = {p.name for p in (REPO / "training" / "configs").glob("*.yaml")}
    assert configs and {f"val_probing/training/configs/{c}" for c in configs} <= names
    pools = {p.name for p in (REPO / "val_probing" / "data").iterdir()}
    assert {f"val_probing/data/{p}" for p in pools} <= names
    stubs = {f"lm_eval/tasks/{FOLDER}/{n}" for n in (*TASK_FILES, MANIFEST)}
    assert stubs <= names
    assert not any(n.startswith(("tests/", "bench/", "notebooks/")) for n in names)
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "val_probing").rglob("*.py")}
    assert modules <= names, f"modules missing from the wheel (pyproject's packages): {modules - names}"
    training = {
        f"val_probing/training/{p.relative_to(REPO / 'training').as_posix()}"
        for p in (REPO / "training").rglob("*.py")
    }
    assert "val_probing/training/launch.py" in training and training <= names, training - names
    stub = zipfile.ZipFile(wheel).read(f"lm_eval/tasks/{FOLDER}/val_code.yaml").decode()
    assert '"../../../val_probing/tasks_yaml/val_code.yaml"' in stub


def test_entry_point_names_the_package_holding_the_yamls() -> None:
    """Resolved the way lm-eval PR #4015 does: import the named module, scan its folder for task YAMLs."""
    from lm_eval.tasks._index import TaskIndex

    (ep,) = [e for e in md.entry_points(group="lm_eval.tasks") if e.name == "val_probing"]
    assert ep.value == "val_probing.tasks_yaml"
    folder = Path(importlib.import_module(ep.value).__file__ or "").parent
    assert folder.resolve() == (REPO / "tasks_yaml").resolve()
    assert set(TaskIndex.build([folder])) == TASK_NAMES
    assert {p.name for p in folder.glob("*.yaml")} == set(TASK_FILES)
    assert (folder / "_default_template_yaml").is_file()


# --------------------------------------------------------------------------------- register / unregister


def _record(tmp: Path) -> Path:
    record = tmp / "site" / "val_probing-0.1.0.dist-info" / "RECORD"
    record.parent.mkdir(parents=True)
    record.write_text("val_probing/__init__.py,sha256=x,1\n")
    return record


def test_register_twice_then_unregister_leaves_nothing(tmp_path: Path) -> None:
    tasks = tmp_path / "site" / "lm_eval" / "tasks"
    tasks.mkdir(parents=True)
    record = _record(tmp_path)
    before = record.read_text()
    first = register(REPO / "tasks_yaml", tasks, record)
    assert {p.name for p in first.written} == {*TASK_FILES, MANIFEST}
    assert is_registered(tasks)
    lines = record.read_text().splitlines()
    assert f"lm_eval/tasks/{FOLDER}/val_code.yaml,," in lines
    second = register(REPO / "tasks_yaml", tasks, record)
    assert second.written == () and len(second.unchanged) == len(TASK_FILES) + 1
    assert record.read_text().splitlines() == lines, "RECORD lines are not duplicated"
    from lm_eval.tasks._index import TaskIndex

    assert set(TaskIndex.build([tasks])) == TASK_NAMES, "lm-eval indexes the stubs as the four tasks"
    gone = unregister(tasks, record)
    assert len(gone.removed) == len(TASK_FILES) + 1
    assert not (tasks / FOLDER).exists() and list(tasks.iterdir()) == []
    assert record.read_text() == before
    assert unregister(tasks, record).removed == ()


def test_register_never_overwrites_or_deletes_what_it_did_not_write(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks"
    (tasks / FOLDER).mkdir(parents=True)
    foreign = tasks / FOLDER / "val_code.yaml"
    foreign.write_text("task: someone_elses\n")
    with pytest.raises(RegistrationError, match=r"refusing to overwrite .*val_code\.yaml"):
        register(REPO / "tasks_yaml", tasks, None)
    assert foreign.read_text() == "task: someone_elses\n"
    assert not (tasks / FOLDER / "val_document.yaml").exists(), "nothing written when refused"
    foreign.unlink()
    register(REPO / "tasks_yaml", tasks, None)
    mine = tasks / FOLDER / "notes.txt"
    mine.write_text("the user's own file")
    (tasks / FOLDER / "valprobing.yaml").write_text("group: edited\n")
    with pytest.raises(RegistrationError, match=r"refusing to delete .*valprobing\.yaml"):
        unregister(tasks, None)
    (tasks / FOLDER / "valprobing.yaml").unlink()
    unregister(tasks, None)
    assert [p.name for p in (tasks / FOLDER).iterdir()] == ["notes.txt"], "a file we did not write stays"


def test_register_command_prints_what_it_wrote_and_where(tmp_path: Path, monkeypatch, capsys) -> None:
    from val_probing import cli

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    monkeypatch.setattr("val_probing.registration.lm_eval_tasks_folder", lambda: tasks)
    monkeypatch.setattr("val_probing.registration.installed_record", lambda: None)
    assert cli.main(["register"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tasks / FOLDER / 'val_document.yaml'}" in out
    assert f"VAL tasks registered: {tasks / FOLDER} -> " in out
    assert cli.main(["register"]) == 0
    assert "already registered, nothing written" in capsys.readouterr().out
    assert cli.main(["unregister"]) == 0
    assert f"removed {tasks / FOLDER / 'val_code.yaml'}" in capsys.readouterr().out
    assert not (tasks / FOLDER).exists()


def test_unwritable_lm_eval_folder_is_exit_2_naming_it(tmp_path: Path, monkeypatch, capsys) -> None:
    from val_probing import cli

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / FOLDER).write_text("a file where the folder goes")
    monkeypatch.setattr("val_probing.registration.lm_eval_tasks_folder", lambda: tasks)
    monkeypatch.setattr("val_probing.registration.installed_record", lambda: None)
    assert cli.main(["register"]) == 2
    err = capsys.readouterr().err
    assert str(tasks / FOLDER) in err and "Traceback" not in err


# ------------------------------------------------------------------------------------ the real lm_eval CLI


def _results(out: Path) -> dict:
    (path,) = out.rglob("results_*.json")
    return json.loads(path.read_text())["results"]


@pytest.mark.slow
def test_lm_eval_sees_the_tasks_with_no_include_path(tmp_path: Path, smollm2_tokenizer_dir: Path) -> None:
    """After the README's install (which runs `val-probing register`), in a folder outside the clone."""
    lm_eval = Path(sys.executable).with_name("lm_eval")
    if not is_registered(Path(importlib.util.find_spec("lm_eval").origin).parent / "tasks"):  # type: ignore[union-attr]
        pytest.fail("the VAL tasks are not registered: scripts/install.sh runs `val-probing register`")
    meta = json.dumps({"context_length": 1024, "tokenizer": str(smollm2_tokenizer_dir)})
    env = {"VAL_PROBING_CACHE": str(tmp_path / "cache")}
    for tasks, expected in (
        ("val_*", {"val_document", "val_code", "val_database"}),
        ("valprobing", TASK_NAMES),
        ("val_document", {"val_document"}),
    ):
        out = tmp_path / tasks.replace("*", "star")
        cmd = [str(lm_eval), "--model", "dummy", "--tasks", tasks, "--limit", "4", "--metadata", meta]
        done = _run([*cmd, "--output_path", str(out)], cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        assert set(_results(out)) == expected
    own = tmp_path / "own_tasks"
    own.mkdir()
    (own / "my_task.yaml").write_text("task: my_own_task\ndataset_path: json\noutput_type: generate_until\n")
    listed = _run([str(lm_eval), "ls", "tasks", "--include_path", str(own)], cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr[-3000:]
    for name in (*TASK_NAMES, "my_own_task"):
        assert f"|{name} " in listed.stdout, name


def _fresh_venv(tmp_path: Path) -> tuple[Path, Path]:
    """(venv, its site-packages): a new venv whose heavy dependencies come from this environment, so
    only lm-eval and val-probing are installed into it (its own)."""
    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path).returncode == 0
    site = next((venv / "lib").glob("python3*/site-packages"))
    deps = next(p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "lm_eval").is_dir())
    (site / "_deps.pth").write_text(f"{deps}\n")
    return venv, site


@pytest.mark.slow
def test_a_wheel_in_a_fresh_venv_needs_no_include_path(tmp_path: Path, wheel: Path) -> None:
    """pip install of the wheel alone (no register) serves the tasks; pip uninstall takes the stubs away."""
    venv, site = _fresh_venv(tmp_path)
    py = str(venv / "bin" / "python")
    lm_eval_version = md.version("lm-eval")
    pip = [py, "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed"]
    done = _run([*pip, f"lm-eval=={lm_eval_version}", str(wheel)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    where = _run(
        [py, "-c", "import val_probing, lm_eval; print(val_probing.__file__, lm_eval.__file__)"], cwd=tmp_path
    )
    assert where.stdout.split() and all(str(site) in p for p in where.stdout.split()), where.stdout
    launch = _run(
        [py, "-c", "from val_probing.training.launch import launch_command, load_recipe"], cwd=tmp_path
    )
    assert launch.returncode == 0, launch.stderr[-3000:]
    meta = json.dumps({"context_length": 1024, "tokenizer": "whitespace"})
    out = tmp_path / "out"
    cmd = [str(venv / "bin" / "lm_eval"), "--model", "dummy", "--tasks", "val_*", "--limit", "4"]
    done = _run([*cmd, "--metadata", meta, "--output_path", str(out)], cwd=tmp_path,
                env={"VAL_PROBING_CACHE": str(tmp_path / "cache")})  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert set(_results(out)) == {"val_document", "val_code", "val_database"}
    cli = str(venv / "bin" / "val-probing")
    helped = _run([cli, "train", "run", "--help"], cwd=tmp_path)
    assert helped.returncode == 0 and "in2_tiny_cpu" in helped.stdout
    by_name = _run([cli, "train", "run", "--config", "in2_tiny_cpu"], cwd=tmp_path)
    assert by_name.returncode == 2 and "set dataset" in by_name.stderr, by_name.stderr
    assert _run([py, "-m", "pip", "uninstall", "-y", "val-probing"], cwd=tmp_path).returncode == 0
    assert not (site / "lm_eval" / "tasks" / FOLDER).exists()
    assert not (site / "val_probing").exists()


@pytest.mark.slow
def test_an_editable_install_keeps_its_stubs_when_installed_again(tmp_path: Path) -> None:
    """`pip install -e .` ships the stubs itself (pip records them): a second one, after a pull or to add
    an extra, writes them again instead of deleting what `register` listed; uninstall removes them."""
    from val_probing.registration import stub_files

    venv, site = _fresh_venv(tmp_path)
    py = str(venv / "bin" / "python")
    pip = [py, "-m", "pip", "install", "-q", "--no-deps"]
    done = _run([*pip, "--ignore-installed", f"lm-eval=={md.version('lm-eval')}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = site / "lm_eval" / "tasks" / FOLDER
    expected = stub_files((REPO / "tasks_yaml").resolve())
    for attempt in ("first", "again"):
        done = _run([*pip, "-e", str(REPO)], cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        found = {p.name: p.read_text(encoding="utf-8") for p in folder.iterdir()}
        assert found == expected, attempt
    registered = _run([str(venv / "bin" / "val-probing"), "register"], cwd=tmp_path)
    assert registered.returncode == 0 and "already registered" in registered.stdout, registered.stdout
    listed = _run([str(venv / "bin" / "lm_eval"), "ls", "tasks"], cwd=tmp_path)
    assert listed.returncode == 0 and all(f"|{name} " in listed.stdout for name in TASK_NAMES)
    assert _run([py, "-m", "pip", "uninstall", "-y", "val-probing"], cwd=tmp_path).returncode == 0
    assert not folder.exists()


def test_eval_adds_the_include_path_only_when_the_tasks_are_not_registered() -> None:
    from val_probing.evaluate import EvalArgumentError, forwarded_argv

    argv = ["--model", "dummy", "--tasks", "val_*", "--include_path", "mine"]
    assert forwarded_argv(argv, include_path=None) == ["run", *argv], (
        "registered: the user's --include_path is theirs"
    )
    assert forwarded_argv(["ls", "tasks"], include_path=None) == ["ls", "tasks"]
    with pytest.raises(EvalArgumentError, match="val-probing register"):
        forwarded_argv(argv, include_path="/tasks")


def _pip_uninstall_old_record(record: Path) -> None:
    """What a second `pip install -e .` does first: delete every file the old install's RECORD lists."""
    root = record.parent.parent
    for line in record.read_text().splitlines():
        path = root / line.split(",", 1)[0]
        if path.is_file() and path != record:
            path.unlink()


def test_a_reinstall_that_deletes_the_stubs_is_traced_to_the_fix(tmp_path: Path) -> None:
    from val_probing.registration import registration_problem

    tasks = tmp_path / "site" / "lm_eval" / "tasks"
    tasks.mkdir(parents=True)
    record = _record(tmp_path)
    register(REPO / "tasks_yaml", tasks, record)
    assert registration_problem(tasks) is None
    _pip_uninstall_old_record(record)
    problem = registration_problem(tasks)
    assert problem is not None
    assert "val_document.yaml" in problem and "Tasks not found: val_*" in problem
    assert "pip install -e ." in problem and "run `val-probing register` again" in problem
    register(REPO / "tasks_yaml", tasks, record)  # the fix it names works
    assert registration_problem(tasks) is None


def test_register_check_reports_this_environment() -> None:
    """This venv is registered (scripts/install.sh); --check says so, writes nothing, exit 0."""
    proc = subprocess.run(
        [sys.executable, "-m", "val_probing.cli", "register", "--check"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "VAL tasks registered: lm_eval finds them" in proc.stdout


def test_an_lm_eval_that_loads_task_plugins_gets_no_stubs(tmp_path: Path, monkeypatch, capsys) -> None:
    """lm-eval PR #4015's hook (entry points lm_eval.tasks): stubs would define every task twice."""
    from val_probing import cli
    from val_probing.registration import loads_task_plugins, registration_problem

    tasks = tmp_path / "lm_eval" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "manager.py").write_text("from importlib.metadata import entry_points\n")
    assert not loads_task_plugins(tasks)
    register(REPO / "tasks_yaml", tasks, None)  # an old registration, from before the hook
    (tasks / "_plugins.py").write_text('for ep in entry_points(group="lm_eval.tasks"):\n    pass\n')
    assert loads_task_plugins(tasks) and registration_problem(tasks) is None
    monkeypatch.setattr("val_probing.registration.lm_eval_tasks_folder", lambda: tasks)
    monkeypatch.setattr("val_probing.registration.installed_record", lambda: None)
    assert cli.main(["register"]) == 0
    out = capsys.readouterr().out
    assert f"removed {tasks / FOLDER / 'val_code.yaml'}" in out and "no stubs needed" in out
    assert not (tasks / FOLDER).exists()
    assert cli.main(["register", "--check"]) == 0
    monkeypatch.undo()
    assert not loads_task_plugins(lm_eval_tasks_folder())  # lm-eval 0.4.13 has no hook
