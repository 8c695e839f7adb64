"""Pretrained models by name (mossep.hub): fetched on first use from a local imitation of both hubs
(tests/hubserver.py, a real HTTP server on 127.0.0.1), verified, cached, usable offline."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from mossep import MossepError
from mossep.checkpoints import load_checkpoint
from mossep.cli import main
from mossep.hub import fetch, lookup, resolve
from mossep.hub.cache import models_root

sys.path.insert(0, str(Path(__file__).parent))
from hubserver import FakeHub  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
MS_KIT = FIXTURES / "mossformer_8k" / "tiny_checkpoint"  # configuration.json + encoder/decoder/masknet.bin
MS_REPO = "damo/speech_mossformer_separation_temporal_8k"  # the repository of the name "mossformer-8k"


def kit(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    server = FakeHub().start()
    monkeypatch.setenv("MOSSEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MOSSEP_MODELSCOPE_ENDPOINT", server.url)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # huggingface_hub's own files (not the models)
    monkeypatch.setenv("MOSSEP_HUB_TIMEOUT", "1")
    for var in ("MOSSEP_OFFLINE", "HF_HUB_OFFLINE", "MODELSCOPE_DOMAIN"):
        monkeypatch.delenv(var, raising=False)
    yield server
    if server.gate is not None:
        server.gate.set()
    server.stop()


def file_requests(server: FakeHub) -> list[str]:
    """Requests for model files and listings (not huggingface_hub's own telemetry)."""
    return [p for _, p, _ in server.requests if "/repo" in p or "/resolve/" in p or "/revision/" in p]


def cache_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and "locks" not in p.parts]


def same_weights(a, b) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_names_and_ids_resolve_to_entries():
    assert lookup("mossformer-8k").repo == MS_REPO
    assert lookup("MossFormer2-WHAMR-2spk").repo == "alibabasglab/mossformer2-whamr-2spk"
    assert lookup("alibabasglab/MossFormer2_SS_16K").name == "mossformer2-ss-16k"
    assert lookup("hf:alibabasglab/mossformer2-librimix-2spk").name == "mossformer2-librimix-2spk"
    other = lookup("modelscope:someone/model@v1.0.2")
    assert (other.hub, other.repo, other.revision, other.files) == ("modelscope", "someone/model", "v1.0.2", ())
    assert lookup("default").hub == "bundled" and lookup("robust").hub == "bundled"
    assert lookup("no-such-model") is None and lookup("runs/x/best.safetensors") is None
    for bad in ("hf:not a repo", "modelscope:a/b@../../x", "hf:../x"):
        with pytest.raises(MossepError, match="ORG/NAME"):
            lookup(bad)


def test_modelscope_first_use_downloads_and_verifies_second_use_makes_no_request(hub):
    hub.add_ms(MS_REPO, kit(MS_KIT))
    loaded = load_checkpoint("mossformer-8k")
    assert loaded.source == "modelscope" and loaded.path.is_relative_to(models_root())
    assert same_weights(loaded, load_checkpoint(MS_KIT))
    assert any(n.startswith(f"fetched from modelscope:{MS_REPO}, revision master = ") for n in loaded.notes)
    got = file_requests(hub)
    assert len(got) == 5 and "Recursive=True" in got[0]  # the listing, then the four files
    for name, data in kit(MS_KIT).items():
        assert (loaded.path / name).read_bytes() == data
    before = len(hub.requests)
    again = load_checkpoint("mossformer-8k")
    assert len(hub.requests) == before and again.path == loaded.path


def test_huggingface_first_use_downloads_and_verifies_second_use_makes_no_request(hub):
    files = kit(MS_KIT)
    hub.add_hf("test/mossformer-copy", files)
    entry = lookup("hf:test/mossformer-copy")
    record = fetch(entry)
    assert record["commit"] == hub.hf["test/mossformer-copy"]["commit"]
    assert record["path"].is_relative_to(models_root() / "huggingface")  # huggingface_hub's layout in our cache
    assert {n: hashlib.sha256(d).hexdigest() for n, d in files.items()} == \
        {n: m["sha256"] for n, m in record["files"].items()}
    assert any("/revision/main" in p for p in file_requests(hub))
    assert all(f"/resolve/{record['commit']}/" in p for p in file_requests(hub) if "/resolve/" in p)  # pinned
    before = len(hub.requests)
    loaded = load_checkpoint("hf:test/mossformer-copy")
    assert len(hub.requests) == before and loaded.source == "modelscope"


@pytest.mark.parametrize("variant", ["librimix_2spk", "wsj0mix_3spk", "whamr_2spk"])
def test_huggingface_standalone_names_fetch_one_copy_of_the_weights(hub, variant):
    folder = FIXTURES / "mossformer2_standalone_8k" / "tiny" / variant
    entry = lookup(f"mossformer2-{variant.replace('_', '-')}")
    hub.add_hf(entry.repo, kit(folder))  # config.json, pytorch_model.bin and the .ckpt triple
    loaded = load_checkpoint(entry.name)
    assert loaded.source == "standalone" and loaded.config.num_spks == entry.talkers
    assert same_weights(loaded, load_checkpoint(folder))
    fetched = {p.rpartition("/")[2] for p in file_requests(hub) if "/resolve/" in p}
    assert fetched == {"config.json", "pytorch_model.bin"}


def test_modelscope_mossformer2_name(hub):
    folder = FIXTURES / "mossformer2_modelscope_8k" / "tiny_checkpoint"
    entry = lookup("mossformer2-8k")
    hub.add_ms(entry.repo, kit(folder))
    loaded = load_checkpoint("mossformer2-8k")
    assert loaded.source == "modelscope2" and same_weights(loaded, load_checkpoint(folder))


def test_clearervoice_name_gets_its_rate_from_the_list(hub, monkeypatch):
    from mossep.hub import registry

    weights = (FIXTURES / "mossformer2_8k" / "tiny_checkpoint.pt").read_bytes()
    entry = registry.ModelEntry("cv-test", "huggingface", "test/cv", "main", ("last_best_checkpoint", "w.pt"),
                                sample_rate=16000)
    monkeypatch.setattr(registry, "REGISTRY", registry.REGISTRY + (entry,))
    hub.add_hf("test/cv", {"last_best_checkpoint": b"w.pt\n", "w.pt": weights})
    loaded = load_checkpoint("cv-test")  # the folder's name (a commit hash) names no rate
    assert loaded.source == "clearvoice" and loaded.config.sample_rate == 16000
    assert loaded.notes[0] == "sample rate from mossep's model list (cv-test)"


def test_clearervoice_pointer_layout_is_followed(hub, tmp_path):
    weights = (FIXTURES / "mossformer2_8k" / "tiny_checkpoint.pt").read_bytes()
    hub.add_hf("test/MossFormer2_SS_8K", {"last_best_checkpoint": b"model.ckpt-3-120.pt\n",
                                          "model.ckpt-3-120.pt": weights, "README.md": b"unused"})
    record = fetch(lookup("hf:test/MossFormer2_SS_8K"))
    assert sorted(record["files"]) == ["last_best_checkpoint", "model.ckpt-3-120.pt"]
    assert (record["path"] / "model.ckpt-3-120.pt").read_bytes() == weights


@pytest.mark.parametrize("where", ["modelscope", "huggingface"])
def test_corrupted_file_is_rejected_and_not_kept(hub, where):
    files = kit(MS_KIT)
    if where == "modelscope":
        hub.add_ms(MS_REPO, files)
        spec, target = "mossformer-8k", f"{MS_REPO}/masknet.bin"
    else:
        hub.add_hf("test/m", files)
        spec, target = "hf:test/m", "test/m/masknet.bin"
    hub.fault(target, "corrupt")
    with pytest.raises(MossepError) as e:
        load_checkpoint(spec)
    message = str(e.value)
    assert "\n" not in message and "masknet.bin" in message and "does not match" in message
    assert "pass --model PATH" in message
    kept = cache_files(models_root())
    assert not any(p.name.endswith(".part") or p.read_bytes()[:1] == bytes([files["masknet.bin"][0] ^ 0xFF])
                   and p.stat().st_size == len(files["masknet.bin"]) for p in kept)
    assert not list((models_root() / "fetched").glob("*.json")) if (models_root() / "fetched").exists() else True
    del hub.faults[target]  # the hub is right again: the next try fetches and keeps a good copy
    assert load_checkpoint(spec).source == "modelscope"


def test_file_not_matching_the_pinned_hash_is_rejected(hub):
    entry = lookup("mossformer2-ss-16k")
    assert entry.pinned and entry.sha256
    hub.add_hf(entry.repo, {"last_best_checkpoint": b"last_best_checkpoint.pt\n",
                            "last_best_checkpoint.pt": b"not the published weights"}, commit=entry.revision)
    with pytest.raises(MossepError, match="the sha256 mossep pins"):
        fetch(entry)
    assert not any(p.name == "last_best_checkpoint.pt" or p.stat().st_size == 25
                   for p in cache_files(models_root() / "huggingface"))


def test_connection_cut_halfway_resumes(hub):
    files = kit(MS_KIT)
    hub.add_ms(MS_REPO, files)
    hub.fault(f"{MS_REPO}/masknet.bin", "cut")
    record = fetch(lookup("mossformer-8k"))
    ranges = [r for _, p, r in hub.requests if "masknet.bin" in p and r]
    assert len(ranges) == 1 and 0 < int(ranges[0][6:-1]) <= len(files["masknet.bin"]) // 2  # what reached disk
    assert (record["path"] / "masknet.bin").read_bytes() == files["masknet.bin"]


def test_huggingface_connection_cut_halfway_resumes(hub):
    files = kit(MS_KIT)  # huggingface_hub writes 10 MB blocks: a cut after 12 MB leaves one on disk
    files["masknet.bin"] = os.urandom(24 << 20)
    hub.add_hf("test/m", files)
    hub.fault("test/m/masknet.bin", "cut")
    record = fetch(lookup("hf:test/m"))
    ranges = [r for m, p, r in hub.requests if "masknet.bin" in p and m == "GET" and r]
    assert len(ranges) == 1 and 0 < int(ranges[0][6:-1]) <= len(files["masknet.bin"]) // 2
    assert (record["path"] / "masknet.bin").read_bytes() == files["masknet.bin"]


def test_download_left_by_an_earlier_run_is_continued(hub):
    files = kit(MS_KIT)
    hub.add_ms(MS_REPO, files)
    part = models_root() / "modelscope" / MS_REPO / "master" / "masknet.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(files["masknet.bin"][:1000])
    record = fetch(lookup("mossformer-8k"))
    assert [r for _, p, r in hub.requests if "masknet.bin" in p] == ["bytes=1000-"]
    assert (record["path"] / "masknet.bin").read_bytes() == files["masknet.bin"] and not part.exists()


def test_huggingface_download_left_by_an_earlier_run_is_continued(hub):
    files = kit(MS_KIT)
    hub.add_hf("test/m", files)
    sha = hashlib.sha256(files["masknet.bin"]).hexdigest()
    part = models_root() / "huggingface" / "models--test--m" / "blobs" / f"{sha}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(files["masknet.bin"][:1000])
    record = fetch(lookup("hf:test/m"))
    assert [r for m, p, r in hub.requests if "masknet.bin" in p and m == "GET"] == ["bytes=1000-"]
    assert (record["path"] / "masknet.bin").read_bytes() == files["masknet.bin"] and not part.exists()
    assert (record["path"] / "masknet.bin").resolve() == part.with_name(sha)  # huggingface_hub's own layout


@pytest.mark.parametrize("mode", ["404", "500", "hang"])
@pytest.mark.parametrize("where", ["modelscope", "huggingface"])
def test_hub_errors_are_one_line_within_the_timeout(hub, capsys, mode, where):
    if where == "modelscope":
        hub.add_ms(MS_REPO, kit(MS_KIT))
        hub.fault(MS_REPO, mode)
        spec, page = "mossformer-8k", f"{hub.url}/models/{MS_REPO}/files"
    else:
        hub.add_hf("alibabasglab/mossformer2-whamr-2spk", {})
        hub.fault("alibabasglab/mossformer2-whamr-2spk", mode)
        spec, page = "mossformer2-whamr-2spk", f"{hub.url}/alibabasglab/mossformer2-whamr-2spk/tree/main"
    start = time.monotonic()
    with pytest.raises(SystemExit) as e:
        main(["models", "pull", spec])
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.count("\n") == 1 and err.startswith("mossep: error: cannot ")
    assert f"from {page} and pass --model PATH" in err
    if mode == "hang":
        assert f"cannot reach 127.0.0.1:{hub.url.rpartition(':')[2]} to fetch {spec} (no answer within 1 s)" in err
    else:
        assert f"cannot fetch {spec} from 127.0.0.1:" in err and f"HTTP {mode}" in err
    if where == "huggingface":
        assert "config.json, pytorch_model.bin" in err
    assert not list((models_root() / "fetched").glob("*.json")) if (models_root() / "fetched").exists() else True


def test_unreachable_hub_names_host_files_and_url(monkeypatch, tmp_path):
    monkeypatch.setenv("MOSSEP_CACHE", str(tmp_path))
    monkeypatch.setenv("MOSSEP_MODELSCOPE_ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused
    monkeypatch.delenv("MOSSEP_OFFLINE", raising=False)
    with pytest.raises(MossepError, match=r"^cannot reach 127\.0\.0\.1:9 to fetch mossformer-8k \(.*\); download "
                       r"configuration\.json, encoder\.bin, decoder\.bin, masknet\.bin from http://127\.0\.0\.1:9/"
                       r"models/damo/speech_mossformer_separation_temporal_8k/files and pass --model PATH$"):
        fetch(lookup("mossformer-8k"))


@pytest.mark.parametrize("var", ["MOSSEP_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_never_connects_and_uses_the_cache(hub, monkeypatch, var):
    hub.add_ms(MS_REPO, kit(MS_KIT))
    hub.add_hf("test/m", kit(MS_KIT))
    monkeypatch.setenv(var, "1")
    for spec in ("mossformer-8k", "hf:test/m"):
        with pytest.raises(MossepError, match=f"not in the cache .* {var}=1 forbids fetching it from "
                           f"127.0.0.1:\\d+; download .* pass --model PATH"):
            load_checkpoint(spec)
    assert hub.requests == []
    monkeypatch.delenv(var)
    fetch(lookup("mossformer-8k"))
    fetch(lookup("hf:test/m"))
    monkeypatch.setenv(var, "1")
    before = len(hub.requests)
    assert load_checkpoint("mossformer-8k").source == load_checkpoint("hf:test/m").source == "modelscope"
    assert len(hub.requests) == before


def test_two_processes_pulling_at_once_end_with_one_good_copy(hub, monkeypatch):
    monkeypatch.setenv("MOSSEP_HUB_TIMEOUT", "120")  # the held download must not time out
    files = kit(MS_KIT)
    hub.add_ms(MS_REPO, files)
    hub.gate = threading.Event()  # file downloads wait until both processes are running
    cmd = [sys.executable, "-m", "mossep", "models", "pull", "mossformer-8k"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = None
    try:
        deadline = time.monotonic() + 120
        while not any("FilePath=" in p for p in file_requests(hub)):  # the first holds the lock, mid-download
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        second = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = second.stderr.readline()  # blocks until the second process says it waits for the first
        assert "waiting for another process that is fetching mossformer-8k" in line, line
    finally:
        hub.gate.set()
    out1, err1 = first.communicate(timeout=120)
    out2, err2 = second.communicate(timeout=120)
    assert first.returncode == second.returncode == 0, (err1, err2)
    assert out1 == out2 and "revision" in out1
    assert sum("Recursive=True" in p for p in file_requests(hub)) == 1
    for name, data in files.items():
        assert sum(f"FilePath={name}" in p for p in file_requests(hub)) == 1
    folder = models_root() / "modelscope" / MS_REPO / "master"
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)
    assert all((folder / n).read_bytes() == d for n, d in files.items())


def test_an_existing_path_wins_over_a_name(hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mossformer-8k").mkdir()
    for name, data in kit(MS_KIT).items():
        (tmp_path / "mossformer-8k" / name).write_bytes(data)
    assert resolve("mossformer-8k") is None
    assert load_checkpoint("mossformer-8k").path == Path("mossformer-8k") and hub.requests == []


def test_unknown_name_is_a_one_line_error(hub):
    with pytest.raises(MossepError, match="model not found .*mossep models"):
        load_checkpoint("mossformer9-8k")
    assert hub.requests == []


def test_models_list_pull_and_info(hub, capsys):
    hub.add_ms(MS_REPO, kit(MS_KIT))
    with pytest.raises(SystemExit) as e:
        main(["models"])
    out = capsys.readouterr().out
    assert e.value.code in (0, None) and f"cache: {models_root()}\n" in out
    for name in ("default", "robust", "mossformer-8k", "mossformer2-8k", "mossformer2-librimix-2spk",
                 "mossformer2-wsj0mix-3spk", "mossformer2-whamr-2spk", "mossformer2-ss-16k"):
        assert name in out
    assert "not cached" in out and "installed" in out and "When to pick which" in out
    with pytest.raises(SystemExit) as e:
        main(["models", "pull", "mossformer-8k"])
    assert e.value.code in (0, None)
    commit = hub.ms[MS_REPO]["commit"]
    assert f"revision {commit}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["models", "--json"])
    import json
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["models"]}
    assert rows["mossformer-8k"]["cached_revision"] == commit and rows["mossformer2-8k"]["state"] == "not cached"
    with pytest.raises(SystemExit):
        main(["info", "mossformer-8k", "--json"])
    info = json.loads(capsys.readouterr().out)
    assert f"fetched from modelscope:{MS_REPO}, revision master = {commit}" in info["notes"]


def test_separator_takes_a_name(hub):
    from mossep import Separator

    hub.add_ms(MS_REPO, kit(MS_KIT))
    sep = Separator("mossformer-8k", device="cpu")
    assert sep.loaded.source == "modelscope" and sep.loaded.path.is_relative_to(models_root())


class _Payload:
    """Pickles to a call of Path.touch: a file that ran code when loaded would create the marker."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_downloaded_file_never_runs_code(hub, tmp_path):
    import io

    folder = FIXTURES / "mossformer2_standalone_8k" / "tiny" / "whamr_2spk"
    marker = tmp_path / "ran"
    buffer = io.BytesIO()
    torch.save({"encoder.conv1d.weight": torch.zeros(1), "payload": _Payload(marker)}, buffer)
    hub.add_hf("alibabasglab/mossformer2-whamr-2spk", {"config.json": (folder / "config.json").read_bytes(),
                                                       "pytorch_model.bin": buffer.getvalue()})
    with pytest.raises(MossepError):
        load_checkpoint("mossformer2-whamr-2spk")
    assert not marker.exists()


def test_endpoints_follow_the_environment(monkeypatch):
    from mossep.hub import huggingface, modelscope

    for var in ("MOSSEP_MODELSCOPE_ENDPOINT", "MODELSCOPE_DOMAIN", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    assert modelscope.endpoint() == "https://www.modelscope.cn" and huggingface.endpoint() == "https://huggingface.co"
    monkeypatch.setenv("MODELSCOPE_DOMAIN", "www.modelscope.ai")  # the official client's variable: a host name
    assert modelscope.endpoint() == "https://www.modelscope.ai"
    monkeypatch.setenv("MOSSEP_MODELSCOPE_ENDPOINT", "http://mirror.example:8080/")
    assert modelscope.endpoint() == "http://mirror.example:8080"
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.example/")
    assert huggingface.endpoint() == "https://hf-mirror.example"
