"""The documentation runs: every README code block, the quickstart notebook, and the CLI's help.

README blocks are found by parsing the file, so a new block is tested as soon as it is written:
each ```python block runs in a fresh interpreter with a fresh ledger home, each ```bash line runs
from the repository root with this venv's ``bin`` first on ``PATH``, and ```text blocks are prose.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

from sixtyfour_frames import cli
from sixtyfour_frames.emulator import Emulator

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"
VENV_BIN = Path(sys.executable).parent
RUNNABLE = ("python", "bash")
PROSE = ("text",)
COMMAND_TIMEOUT = 100.0
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
SIXTYFOUR_ENV = ("SIXTYFOUR_API_KEY", "SIXTYFOUR_BASE_URL", "SIXTYFOUR_FRAMES_HOME")


# ---------------------------------------------------------------- README parsing


@dataclass(frozen=True)
class Block:
    language: str
    heading: str
    code: str
    line: int  # 1-based line of the opening fence

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")
        return f"{self.language}-{slug}"


def readme_blocks() -> list[Block]:
    """Every fenced block of the README with the heading it sits under."""
    blocks: list[Block] = []
    heading = "top"
    fence: tuple[str, int] | None = None
    body: list[str] = []
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), start=1):
        if fence is None:
            if line.startswith("```"):
                fence = (line[3:].strip(), number)
                body = []
            elif match := re.match(r"#{1,6}\s+(.*)", line):
                heading = match.group(1).strip()
        elif line.startswith("```"):
            blocks.append(Block(fence[0], heading, "\n".join(body) + "\n", fence[1]))
            fence = None
        else:
            body.append(line)
    assert fence is None, f"README.md: the block opened on line {fence[1]} is never closed"
    return blocks


def runnable_blocks() -> list[Any]:
    params = []
    seen: dict[str, int] = {}
    for block in readme_blocks():
        if block.language not in RUNNABLE:
            continue
        seen[block.id] = seen.get(block.id, 0) + 1
        suffix = f"-{seen[block.id]}" if seen[block.id] > 1 else ""
        params.append(pytest.param(block, id=block.id + suffix))
    return params


def commands(block: Block) -> list[str]:
    """The command lines of a bash block (continuations joined; blank and comment lines dropped)."""
    text = block.code.replace("\\\n", " ")
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def without_comment(command: str) -> str:
    return " ".join(shlex.split(command, comments=True))


# ---------------------------------------------------------------- helpers


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """A newcomer's environment: no Sixtyfour settings but a fresh ledger home; the venv first."""
    env = {k: v for k, v in os.environ.items() if k not in SIXTYFOUR_ENV}
    env["SIXTYFOUR_FRAMES_HOME"] = str(home)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run(
    argv: list[str] | str, env: dict[str, str], cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        shell=isinstance(argv, str),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def explain(done: subprocess.CompletedProcess[str]) -> str:
    return (
        f"{done.args!r} exited {done.returncode}\n"
        f"--- stdout ---\n{done.stdout[-4000:]}\n--- stderr ---\n{done.stderr[-4000:]}"
    )


@pytest.fixture(scope="module")
def env_emulator() -> Iterator[Emulator]:
    """The server a block without its own emulator reaches through SIXTYFOUR_* variables."""
    with Emulator() as emu:
        yield emu


# ---------------------------------------------------------------- README


def test_every_readme_block_is_runnable_or_prose() -> None:
    blocks = readme_blocks()
    unknown = [(b.line, b.language) for b in blocks if b.language not in RUNNABLE + PROSE]
    assert not unknown, f"README blocks without a known language (line, language): {unknown}"
    assert sum(b.language == "python" for b in blocks) >= 4
    assert any(b.language == "bash" for b in blocks)


@pytest.mark.parametrize("block", runnable_blocks())
def test_readme_block(block: Block, tmp_path: Path, env_emulator: Emulator) -> None:
    if block.language == "python":
        run_python_block(block, tmp_path, env_emulator)
    else:
        for command in commands(block):
            run_bash_line(command, tmp_path / "home")


def run_python_block(block: Block, tmp_path: Path, emu: Emulator) -> None:
    script = tmp_path / f"readme_line_{block.line}.py"
    script.write_text(block.code, encoding="utf-8")
    extra = {}
    if "Emulator(" not in block.code:
        # A snippet that does not start its own emulator uses the environment, as the README says.
        extra = {"SIXTYFOUR_API_KEY": emu.api_key, "SIXTYFOUR_BASE_URL": emu.base_url}
    env = clean_env(tmp_path / "home", **extra)
    done = run([sys.executable, "-W", "error", str(script)], env, cwd=tmp_path)
    assert done.returncode == 0, f"README.md line {block.line}:\n{explain(done)}"


def run_bash_line(command: str, home: Path) -> None:
    bare = without_comment(command)
    env = clean_env(home)
    if bare == "make test":
        check_make_test()
    elif bare == "make demo":
        check_make_demo(env)
    else:
        done = run(command, env)
        assert done.returncode == 0, explain(done)
        if bare.endswith("--help"):
            assert done.stdout.startswith("usage: "), explain(done)


def check_make_test() -> None:
    """``make test`` is this suite itself: it must be the target CI runs, never run from here."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in [line.strip() for line in ci.splitlines()], ".ci/run must run `make test`"
    assert re.search(r"^test:", (ROOT / "Makefile").read_text(encoding="utf-8"), re.MULTILINE)


def check_make_demo(env: dict[str, str]) -> None:
    """``make demo`` for real, twice: the second time every row comes from the ledger."""
    first = run(["make", "demo"], env)
    assert first.returncode == 0, explain(first)
    lines = first.stdout.splitlines()
    header = next((i for i, line in enumerate(lines) if "company_name" in line), None)
    assert header is not None and "domain" in lines[header], explain(first)
    assert lines[header + 1].startswith("0 "), explain(first)  # the enriched rows, printed
    assert "Wrote examples/out/companies_enriched.parquet" in first.stdout, explain(first)
    second = run(["make", "demo"], env)
    assert second.returncode == 0, explain(second)
    assert "rows charged by the server this time: 0;" in second.stdout, explain(second)


# ---------------------------------------------------------------- notebook


def read_notebook() -> Any:
    return nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]


def test_quickstart_notebook_is_committed_without_outputs() -> None:
    notebook = read_notebook()
    nbformat.validate(notebook)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells
    for cell in code_cells:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]
    assert "widgets" not in notebook.metadata


def python3_kernelspec(directory: Path) -> Path:
    """A ``python3`` kernel that is this interpreter, whatever is installed in the user's Jupyter."""
    spec = directory / "kernels" / "python3"
    spec.mkdir(parents=True)
    kernel = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (sixtyfour-frames tests)",
        "language": "python",
    }
    (spec / "kernel.json").write_text(json.dumps(kernel), encoding="utf-8")
    return directory


def test_quickstart_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_PATH", str(python3_kernelspec(tmp_path / "jupyter")))
    for name in SIXTYFOUR_ENV:
        monkeypatch.delenv(name, raising=False)
    # A safety net: the notebook passes its own ledger everywhere, but never the user's anyway.
    monkeypatch.setenv("SIXTYFOUR_FRAMES_HOME", str(tmp_path / "home"))
    notebook = read_notebook()
    client = NotebookClient(
        notebook,
        timeout=60,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    spec = KernelSpecManager().get_kernel_spec("python3")
    assert spec.argv[0] == sys.executable  # the kernel is this venv, whatever else is installed
    client.execute()  # raises CellExecutionError on the first cell that fails
    outputs = [
        output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    ]
    stderr = [o["text"] for o in outputs if o["output_type"] == "stream" and o["name"] == "stderr"]
    assert not [text for text in stderr if "Warning" in text], stderr
    # The one cell left with the default progress shows a bar: tqdm's widget when ipywidgets is
    # installed, else a text bar on stderr.
    widgets = [o for o in outputs if WIDGET_VIEW in o.get("data", {})]
    assert widgets or any("row" in text and "%|" in text for text in stderr), stderr
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").iterdir())


# ---------------------------------------------------------------- CLI


def subcommands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            children = cast(dict[str, argparse.ArgumentParser], action.choices)
            for name, child in children.items():
                yield (*prefix, name)
                yield from subcommands(child, (*prefix, name))


def test_cli_help_exits_0(tmp_path: Path) -> None:
    done = run(["sixtyfour-frames", "--help"], clean_env(tmp_path / "home"))
    assert done.returncode == 0 and done.stdout.startswith("usage: sixtyfour-frames"), explain(done)


@pytest.mark.parametrize("command", list(subcommands(cli.build_parser())), ids="-".join)
def test_cli_subcommand_help_exits_0(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([*command, "--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: sixtyfour-frames {' '.join(command)}")


def test_a_failing_cli_command_exits_non_zero_with_one_line_on_stderr(tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"
    done = run(
        ["sixtyfour-frames", "enrich", str(missing), "-w", "company_enrichment", "-o", "out.csv"],
        clean_env(tmp_path / "home"),
        cwd=tmp_path,
    )
    assert done.returncode == 1, explain(done)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sixtyfour-frames: error:"), explain(done)
    assert str(missing) in lines[0]
    assert not (tmp_path / "out.csv").exists()
