"""Ships the top-level ``manifests/`` folder inside the wheel as ``aqa_pipeline/data/manifests``.

Everything else lives in pyproject.toml; this hook exists because package data must sit inside a package, while
the manifests' one source stays the repository's top-level folder (``aqa-manifest build`` writes there).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithManifests(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "aqa_pipeline" / "data" / "manifests"
        target.mkdir(parents=True, exist_ok=True)
        for csv_file in sorted(Path(__file__).parent.joinpath("manifests").glob("*.csv")):
            shutil.copy2(csv_file, target / csv_file.name)


setup(cmdclass={"build_py": BuildPyWithManifests})
