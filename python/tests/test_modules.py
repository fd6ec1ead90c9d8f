"""Compiling, diagnostics, loading and verifying bundles, pickling, GPU bundles, type stubs."""

import json
import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pytest

import kiln

ALLOWLIST = pathlib.Path(__file__).resolve().parents[1] / "stubtest-allowlist.txt"


def test_compile_errors_carry_the_diagnostic():
    source = "fn f(x: f32[3]) -> f32[3] {\n    x + y\n}\nexport f;\n"
    with pytest.raises(kiln.CompileError) as caught:
        kiln.compile(source)
    e = caught.value
    assert (e.code, e.file, e.line, e.column) == ("E0101", "<string>", 2, 9)
    assert e.message == "cannot find value `y` in this scope"
    assert source[e.span[0] : e.span[1]] == "y"
    assert "error[E0101]" in str(e) and "x + y" in str(e)
    assert [d["level"] for d in e.diagnostics] == ["error"]
    assert pickle.loads(pickle.dumps(e)).code == "E0101"
    assert "E0101" in kiln.explain("e0101")


def test_compile_errors_from_a_file_name_it(tmp_path):
    path = tmp_path / "broken.kn"
    path.write_text("fn f(x: f32[2]) -> f32[3] { x }\nexport f;\n")
    with pytest.raises(kiln.CompileError) as caught:
        kiln.compile(path)
    assert caught.value.file == str(path) and caught.value.code.startswith("E")


def test_refused_options_and_sources_are_errors(tmp_path):
    with pytest.raises(kiln.CompileError, match="unsupported target `riscv64`") as caught:
        kiln.compile("fn f(x: f32) -> f32 { x }\nexport f;", target="riscv64")
    assert caught.value.code is None and caught.value.line is None
    with pytest.raises(kiln.CompileError, match="exports nothing"):
        kiln.compile("fn f(x: f32) -> f32 { x }")
    with pytest.raises(kiln.CompileError, match="cannot read"):
        kiln.compile(tmp_path / "missing.kn")
    with pytest.raises(ValueError, match="opt_level is 0 to 3"):
        kiln.compile("fn f(x: f32) -> f32 { x }\nexport f;", opt_level=4)
    with pytest.raises(TypeError, match="the source is a str holding the program or a path"):
        kiln.compile(b"fn f() {}")


def test_module_names_are_c_identifiers():
    source = "fn f(x: f32) -> f32 { x }\nexport f;"
    assert kiln.compile(source, module_name="model_2").name == "model_2"
    with pytest.raises(kiln.CompileError, match="module name `my-model` is not a C identifier"):
        kiln.compile(source, module_name="my-model")


def test_warnings_are_compile_warnings():
    with pytest.warns(kiln.CompileWarning, match="unused parameter `y`"):
        m = kiln.compile("fn f(x: f32, y: f32) -> f32 { x }\nexport f;")
    assert m.f(2.0, 3.0) == 2.0


def test_every_optimization_level_gives_the_same_results(mlp_path, mlp, mlp_inputs):
    want = mlp.train_step(**mlp_inputs)
    for level in (0, 1, 3):
        got = kiln.compile(mlp_path, opt_level=level).train_step(**mlp_inputs)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)


def test_saved_bundles_load_and_are_verified(mlp, mlp_inputs, tmp_path):
    manifest = pathlib.Path(mlp.save(tmp_path / "bundle"))
    assert manifest.name == "mlp.json" and json.loads(mlp.manifest)["module"] == "mlp"
    loaded = kiln.load(manifest)
    assert loaded.loss(**mlp_inputs) == mlp.loss(**mlp_inputs)
    library = manifest.parent / "libmlp.so"
    data = bytearray(library.read_bytes())
    data[len(data) // 2] ^= 1
    library.write_bytes(bytes(data))
    with pytest.raises(kiln.LoadError, match="corrupt bundle: `libmlp.so` does not match its SHA-256"):
        kiln.load(manifest)
    with pytest.raises(OSError, match="cannot read the bundle"):
        kiln.load(tmp_path / "nothing.json")


def test_loading_can_demand_a_signature_and_a_memory_limit(mlp, tmp_path):
    manifest = mlp.save(tmp_path)
    with pytest.raises(kiln.LoadError, match="unsigned or forged bundle"):
        kiln.load(manifest, public_key="-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n")
    with pytest.raises(kiln.LoadError, match="over the memory limit: a call of `"):
        kiln.load(manifest, memory_limit=1024)


def test_modules_pickle_as_their_verified_bundle(mlp, mlp_inputs):
    copy = pickle.loads(pickle.dumps(mlp))
    assert copy.name == "mlp" and copy.files == mlp.files
    assert copy.loss(**mlp_inputs) == mlp.loss(**mlp_inputs)
    name, (manifest, files, emulate, device, function) = mlp.__reduce__()[0].__name__, mlp.__reduce__()[1]
    assert name == "_load_files" and function is None
    f = pickle.loads(pickle.dumps(mlp.loss))
    assert isinstance(f, kiln.Function) and f(**mlp_inputs) == mlp.loss(**mlp_inputs)
    files = dict(files)
    files["libmlp.so"] = files["libmlp.so"][:-1] + bytes([files["libmlp.so"][-1] ^ 1])
    with pytest.raises(kiln.LoadError, match="does not match its SHA-256"):
        kiln._kiln._load_files(manifest, files, emulate, device)


def test_interpreted_modules_have_no_bundle(mlp_reference):
    assert mlp_reference.is_interpreted
    with pytest.raises(TypeError, match="runs in the interpreter: it has no bundle"):
        pickle.dumps(mlp_reference)
    with pytest.raises(ValueError, match="more than memory_limit_mib=1"):
        kiln.interpret("fn f(x: f32[1024, 1024]) -> f32[1024, 1024] { x * 2.0 }\nexport f;", memory_limit_mib=1)


def test_gpu_bundles_run_on_the_ptx_emulator():
    source = "fn f(x: f32[64], y: f32[64]) -> f32[64] { tanh(x) * y + 1.0 }\nexport f;"
    gpu = kiln.compile(source, target="nvptx64-nvidia-cuda", gpu="sm_80", emulate=True)
    assert gpu.is_gpu and any(name.endswith(".ptx") for name in gpu.files)
    x, y = np.linspace(-3, 3, 64, dtype=np.float32), np.linspace(0, 1, 64, dtype=np.float32)
    np.testing.assert_allclose(gpu.f(x, y), np.tanh(x) * y + 1, rtol=1e-5)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(gpu)).f(x, y), gpu.f(x, y))


def test_the_type_stubs_match_the_extension():
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "kiln._kiln", "--allowlist", str(ALLOWLIST)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_package_type_checks_against_its_stubs():
    package = pathlib.Path(__file__).resolve().parents[1] / "kiln"
    result = subprocess.run(
        [sys.executable, "-m", "mypy", str(package), "--ignore-missing-imports", "--no-incremental"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
