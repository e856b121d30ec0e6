"""Builds facemag's extension with the project's CMake (the same build as the CLI) for the
interpreter running pip, and hands setuptools the module it made. Reuses the project's ./build
when it exists (FACEMAG_BUILD_DIR overrides), else configures one (Release, no tests/benchmarks)."""
import os
import pathlib
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = pathlib.Path(__file__).resolve().parent.parent


def cached_python(build):
    cache = build / "CMakeCache.txt"
    for line in cache.read_text().splitlines() if cache.exists() else []:
        if line.startswith("Python3_EXECUTABLE:"):
            return line.split("=", 1)[1]
    return None


def same_version(python):
    probe = [python, "-c", "import sys; print(sys.version_info[:2])"]
    return subprocess.run(probe, capture_output=True, text=True).stdout.strip() == str(sys.version_info[:2])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build = pathlib.Path(os.environ.get("FACEMAG_BUILD_DIR", ROOT / "build")).resolve()
        configure = ["cmake", "-S", str(ROOT), "-B", str(build), "-DFACEMAG_BUILD_PYTHON=ON"]
        cached = cached_python(build)
        if cached is None:
            if shutil.which("ninja"):
                configure += ["-G", "Ninja"]
            configure += ["-DCMAKE_BUILD_TYPE=Release", "-DFACEMAG_BUILD_TESTS=OFF",
                          "-DFACEMAG_BUILD_BENCH=OFF", f"-DPython3_EXECUTABLE={sys.executable}"]
        elif not same_version(cached):
            sys.exit(f"facemag: {build} builds the module for {cached}, not Python "
                     f"{sys.version_info[0]}.{sys.version_info[1]}; set FACEMAG_BUILD_DIR to "
                     "another folder")
        subprocess.run(configure, check=True)
        jobs = os.environ.get("FACEMAG_JOBS", str(os.cpu_count() or 1))
        subprocess.run(["cmake", "--build", str(build), "--target", "facemag_python", "--parallel",
                        jobs], check=True)
        built = sorted((build / "python" / "facemag").glob("_facemag*.so"))
        if not built:
            sys.exit(f"facemag: the build made no module in {build / 'python' / 'facemag'}")
        target = pathlib.Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built[0], target)


setup(ext_modules=[Extension("facemag._facemag", sources=[])], cmdclass={"build_ext": CMakeBuild})
