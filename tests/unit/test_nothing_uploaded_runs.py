"""A2: nothing a user sends is unpickled. Loading code must use formats that cannot run code."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [p for folder in ("backend", "workers", "frontend", "webapp") for p in (ROOT / folder).rglob("*.py")]
UNSAFE = [
    (re.compile(r"\bpickle\.loads?\("), "pickle.load"),
    (re.compile(r"allow_pickle\s*=\s*True"), "np.load(allow_pickle=True)"),
    (re.compile(r"torch\.load\((?!.*weights_only\s*=\s*True)"), "torch.load without weights_only=True"),
    # An ONNX tensor's external data names a file to read, anywhere: an uploaded file must not be followed out of itself.
    (re.compile(r"\bonnx\.load\((?!.*load_external_data\s*=\s*False)"), "onnx.load following external data"),
    (re.compile(r"\bjoblib\.load\("), "joblib.load"),
    (re.compile(r"yaml\.load\((?![^)]*SafeLoader)"), "yaml.load without SafeLoader"),
]


def test_no_code_loads_data_in_a_way_that_can_execute_it():
    found = [f"{path.relative_to(ROOT)}:{number}: {name}"
             for path in SOURCES
             for number, line in enumerate(path.read_text().splitlines(), 1)
             for pattern, name in UNSAFE if pattern.search(line)]
    assert not found, "\n".join(found)


def test_the_scan_catches_what_it_looks_for():
    assert UNSAFE[2][0].search("state = torch.load(path)")
    assert not UNSAFE[2][0].search("torch.load(path, weights_only=True)")
    assert not UNSAFE[2][0].search("torch.load(checked(entry, folder), map_location='cpu', weights_only=True)")
    assert UNSAFE[3][0].search("model = onnx.load(path)")
    assert not UNSAFE[3][0].search("model = onnx.load(str(path), load_external_data=False)")
