"""The command line as a new user meets it: every help page, and bad invocations answered in one line.

The parsers are discovered from `build_parser()`, so a command added later is covered without editing
this file. Most invocations run in-process (fast); a few run as processes, where what the whole
process prints and imports is what is tested.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from brandsentry import config
from brandsentry.cli import build_parser, main, split_overrides
from brandsentry.cli._parser import OVERRIDES
from brandsentry.config import config_dir

SRC = Path(__file__).resolve().parents[1] / "src"


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser) of the root, every command group and every command."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, (*path, name))


PARSERS = dict(walk(build_parser()))
LEAVES = [path for path, parser in PARSERS.items() if parser._subparsers is None]


def invoke(capsys, *argv: str) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of `brandsentry ARGV` in this process (argparse exits by SystemExit)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def examples(help_text: str) -> list[str]:
    section = help_text.split("\nexamples:\n", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in section.splitlines()]


def test_the_discovery_sees_commands_and_their_actions():
    assert {("score",), ("train",), ("index", "build"), ("refs", "import"), ("review", "log")} <= set(LEAVES)
    assert len(LEAVES) >= 25


class Composed(Exception):
    """Raised in place of the work an example would start, once its command composed the config."""


@pytest.mark.parametrize("path", list(PARSERS), ids=lambda path: " ".join(path) or "brandsentry")
def test_every_help_has_a_description_and_examples_that_run(path, capsys, monkeypatch):
    """Each example parses and its key=value overrides compose the way its command composes them."""
    code, out, err = invoke(capsys, *path, "--help")
    assert code == 0 and err == ""
    assert PARSERS[path].description, "no description"
    found = examples(out)
    assert found, "no examples section"
    named = config.hydra_errors_named

    @contextmanager
    def composed_then_stop(name: str, overrides: list[str]):  # load_config composes inside it
        with named(name, overrides):
            yield
        raise Composed

    monkeypatch.setattr(config, "hydra_errors_named", composed_then_stop)
    for example in found:
        argv = shlex.split(example.split(" | ")[0])
        assert argv[: len(path) + 1] == ["brandsentry", *path], example
        if "-m" in argv:  # a sweep's values compose inside Hydra, job by job: parsing only
            build_parser().parse_args(split_overrides(argv[1:])[0])
            continue
        try:
            code, _, err = invoke(capsys, *argv[1:])
        except Composed:
            continue
        pytest.fail(f"{example}: exit {code}: {err}")


@pytest.mark.parametrize("path", LEAVES, ids=" ".join)
def test_every_usage_line_ends_with_the_config_values(path):
    usage = " ".join(PARSERS[path].format_usage().split())
    assert usage.endswith(OVERRIDES), usage


@pytest.mark.parametrize("command", ["score", "train"])
def test_usage_shows_the_required_listings_value(command):
    """train's comes from `listings: ???` in configs/train.yaml; score's shorthand is declared."""
    assert "listings=MANIFEST [key=value ...]" in PARSERS[(command,)].format_usage()


@pytest.fixture
def files(tmp_path):
    (tmp_path / "ok.csv").write_text("listing_id,image_path,claimed_brand\n1,a.jpg,Acme\n")
    (tmp_path / "labelled.csv").write_text(
        "listing_id,image_path,claimed_brand,label\n1,a.jpg,Acme,authentic\n"
    )
    (tmp_path / "no_brand.csv").write_text("listing_id,image_path\n1,a.jpg\n")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "a_file").write_text("")
    (tmp_path / "wordmarks.csv").write_text("brand,mark\nAcme,ACME\n")
    (tmp_path / "sellers.csv").write_text("brand,seller\nAcme,s1\n")
    (tmp_path / "run").mkdir()
    return tmp_path


def case(argv: list[str], named: list[str], slow: bool = False):
    """A bad invocation ({d}: a folder of `files`) and the texts its message must hold."""
    return pytest.param(argv, named, id=" ".join(argv), marks=[pytest.mark.slow] if slow else [])


BAD = [
    case(["score", "listings={d}/ok.csv", "nonsense_key=1"], ["nonsense_key"]),
    case(
        ["score", "listings={d}/ok.csv", "cues.logo.ratoi=0.7"],
        ["cues.logo.ratoi", "did you mean cues.logo.ratio?"],
    ),
    case(
        ["score", "listings={d}/ok.csv", "embedder=lite9"],
        ["embedder=lite9", "choices: lite0, lite0_full_gem"],
    ),
    case(["score", "listings={d}/ok.csv", "index=flat9"], ["index=flat9", "choices: flat, hnsw"]),
    case(["score", "listings={d}/ok.csv", "cues.logo.ratio=["], ["cues.logo.ratio=["]),
    case(["score"], ["listings=MANIFEST"]),
    case(["score", "listings={d}/missing.csv"], ["missing.csv", "does not exist"]),
    case(["score", "listings={d}/no_brand.csv"], ["no_brand.csv", "claimed_brand"]),
    case(["score", "listings={d}/empty.csv"], ["empty.csv", "empty"]),
    case(["score", "listings={d}/ok.csv", "out={d}/a_file"], ["a_file", "not a folder"]),
    case(["train"], ["listings"]),
    case(["train", "listings={d}/missing.csv"], ["missing.csv", "does not exist"]),
    case(["train", "listings={d}/ok.csv"], ["ok.csv", "label"]),
    case(["train", "listings={d}/ok.csv", "nonsense=1"], ["nonsense"]),
    case(["train", "listings={d}/ok.csv", "experiment=nope"], ["experiment=nope", "fast_cues"]),
    case(["promote", "7"], ["7", "no model is registered yet", "brandsentry train"], slow=True),
    case(["promote", "seven"], ["seven"]),
    case(["rescan", "--since", "2026-01-01"], ["--brand"]),
    case(["evaluate", "nope", "{d}"], ["nope"]),
    case(["refs", "import", "{d}/missing.csv"], ["missing.csv"]),
    case(["refs", "list", "--status", "gone"], ["gone"]),
    case(["brands", "import", "{d}/wordmarks.csv"], ["wordmarks.csv", "wordmark"]),
    case(["sellers", "import", "{d}/sellers.csv"], ["sellers.csv", "seller_id"]),
    case(["review", "summary", "{d}/run", "nonsense_key=1"], ["nonsense_key"]),
    case(["index", "info", "indx=hnsw"], ["indx", "did you mean index?"]),
    case(["index", "nope"], ["nope"]),
]


@pytest.mark.parametrize(("argv", "named"), BAD)
def test_a_bad_invocation_exits_2_in_one_message_naming_the_bad_value(argv, named, files, capsys):
    code, _, err = invoke(capsys, *(a.format(d=files) for a in argv), f"workspace={files / 'ws'}")
    assert code == 2, err
    assert "Traceback" not in err and "Error executing job" not in err, err
    assert "use +" not in err, err  # never Hydra's hint ("To append to your config use +key=value")
    for text in named:
        assert text in err, err


def test_a_group_option_error_lists_the_groups_yaml_files(capsys):
    code, _, err = invoke(capsys, "index", "info", "embedder=lite9")
    choices = ", ".join(sorted(path.stem for path in (config_dir() / "embedder").glob("*.yaml")))
    assert code == 2 and err.strip().endswith(f"choices: {choices}"), err


def test_a_failing_sweep_job_is_named_without_hydras_job_line(files, capsys):
    code, _, err = invoke(
        capsys, "train", "-m", f"listings={files}/ok.csv", "classifier=hgb,nope", f"workspace={files}"
    )
    assert code == 2 and "classifier=hgb,nope" in err and "choices: hgb, logreg" in err, err
    assert "Error executing job" not in err and "Traceback" not in err, err


def test_scoring_checks_its_manifest_columns_as_the_scorer_reads_them():
    from brandsentry.cli.score import REQUIRED_COLUMNS
    from brandsentry.features import REQUIRED_LISTING_COLUMNS

    assert REQUIRED_COLUMNS == REQUIRED_LISTING_COLUMNS


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A workspace's MLflow registry holding brandsentry/1 as @champion (the bundle itself is never read)."""
    from mlflow import MlflowClient

    from brandsentry.config import Workspace

    root = tmp_path_factory.mktemp("registry")
    uri = Workspace(root).mlflow_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("brandsentry")
    version = client.create_model_version("brandsentry", str(root / "bundle"))
    client.set_registered_model_alias("brandsentry", "champion", version.version)
    return root


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["promote", "9"], "brandsentry has no version 9; its versions: 1; its aliases: @champion -> 1"),
        (["promote", "other/1"], "no registered model 'other'; registered models: brandsentry"),
        (
            ["score", "listings={d}/ok.csv", "model=models:/brandsentry@nope"],
            "models:/brandsentry@nope: brandsentry has no alias @nope; its versions: 1; its aliases: "
            "@champion -> 1",
        ),
    ],
)
def test_a_bad_alias_or_version_is_named_with_what_the_registry_holds(argv, named, registry, files, capsys):
    code, _, err = invoke(capsys, *(a.format(d=files) for a in argv), f"workspace={registry}")
    assert code == 2 and "Traceback" not in err and named in err, err


def run_process(*argv: str, code: str = "") -> subprocess.CompletedProcess:
    """`brandsentry ARGV` as its own interpreter (then `code`, e.g. printing what was imported)."""
    script = (
        f"import sys\nfrom brandsentry.cli import main\ncode = main(sys.argv[1:])\n{code}\nsys.exit(code)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, env=env, text=True, timeout=300
    )


@pytest.mark.parametrize("listings", ["missing.csv", "no_brand.csv"])
def test_a_bad_manifest_fails_before_the_scoring_stack_is_imported(listings, files):
    """Why a bad `score` takes a second, not the ~12 s of torch, the model and a tcmalloc restart."""
    done = run_process(
        "score",
        f"listings={files / listings}",
        f"workspace={files / 'ws'}",
        code="print(sorted({'torch', 'brandsentry.scoring', 'mlflow'} & set(sys.modules)))",
    )
    assert done.returncode == 2 and listings in done.stderr and "Traceback" not in done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_a_train_error_is_one_line_without_hydras_job_line(files):
    done = run_process("train", f"listings={files}/labelled.csv", f"workspace={files / 'ws'}")  # no index
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("brandsentry train: "), done.stderr
