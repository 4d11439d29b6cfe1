"""Build glue only: the Rust storage engine (setuptools-rust) and the Cython modules in ext/.

Everything else about the package lives in pyproject.toml.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools_rust import Binding, RustExtension

setup(
    rust_extensions=[
        RustExtension(
            "tidelog.storage._engine",
            path="rust/python/Cargo.toml",
            binding=Binding.PyO3,
            py_limited_api="cp311",
            # Editable installs would default to a debug build, which runs the hot path about
            # 2.5x slower (bench/bench_storage.py); tests and benchmarks use the release build.
            debug=False,
        )
    ],
    ext_modules=cythonize(
        [Extension("tidelog.protocol._records", ["ext/_records.pyx"])],
        compiler_directives={"language_level": 3, "boundscheck": False, "wraparound": False},
    ),
    zip_safe=False,
)
