"""A PEP 517 build backend with no build requirements, so `pip install ./python` works offline.

It builds a pure-Python wheel (py3-none-any) of the `kvasir` package and an sdist, from the
`[project]` table of pyproject.toml, using only the standard library (tomllib, zipfile, tarfile).
"""

import base64
import hashlib
import os
import tarfile
import tomllib
import zipfile

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PACKAGE = "kvasir"


def _project():
    with open(os.path.join(_ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def _metadata(project) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {project['name']}", f"Version: {project['version']}"]
    if "description" in project:
        lines.append(f"Summary: {project['description']}")
    if "requires-python" in project:
        lines.append(f"Requires-Python: {project['requires-python']}")
    for dep in project.get("dependencies", []):
        lines.append(f"Requires-Dist: {dep}")
    for extra, deps in project.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        lines.extend(f'Requires-Dist: {dep}; extra == "{extra}"' for dep in deps)
    return "\n".join(lines) + "\n"


def _package_files():
    for folder, dirs, files in os.walk(os.path.join(_ROOT, _PACKAGE)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")):
                continue
            full = os.path.join(folder, name)
            yield full, os.path.relpath(full, _ROOT).replace(os.sep, "/")


def _dist_name(project) -> str:
    return f"{project['name'].replace('-', '_')}-{project['version']}"


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    project = _project()
    dist = _dist_name(project)
    info = f"{dist}.dist-info"
    filename = f"{dist}-py3-none-any.whl"
    record = []

    def add(zf, arcname, data: bytes):
        zf.writestr(zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0)), data, compress_type=zipfile.ZIP_DEFLATED)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{arcname},sha256={digest},{len(data)}")

    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w") as zf:
        for full, arcname in _package_files():
            with open(full, "rb") as f:
                add(zf, arcname, f.read())
        add(zf, f"{info}/METADATA", _metadata(project).encode())
        scripts = project.get("scripts", {})
        if scripts:   # console scripts: pip writes a launcher for each entry
            add(zf, f"{info}/entry_points.txt",
                ("[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items())).encode())
        add(zf, f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: kvasir_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        record.append(f"{info}/RECORD,,")
        zf.writestr(zipfile.ZipInfo(f"{info}/RECORD", date_time=(1980, 1, 1, 0, 0, 0)), "\n".join(record) + "\n")
    return filename


def build_sdist(sdist_directory, config_settings=None):
    project = _project()
    dist = _dist_name(project)
    filename = f"{dist}.tar.gz"
    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz") as tar:
        for rel in ("pyproject.toml", "README.md"):
            tar.add(os.path.join(_ROOT, rel), arcname=f"{dist}/{rel}")
        tar.add(os.path.join(_ROOT, "_build", "kvasir_build.py"), arcname=f"{dist}/_build/kvasir_build.py")
        for full, arcname in _package_files():
            tar.add(full, arcname=f"{dist}/{arcname}")
        info = tarfile.TarInfo(f"{dist}/PKG-INFO")
        data = _metadata(project).encode()
        info.size = len(data)
        import io
        tar.addfile(info, io.BytesIO(data))
    return filename
