"""psn-caffe: the Python side (preprocessing, nets, training, reports, the TPU Python layer).

Caffe itself (pycaffe included) is built by tools/build_caffe.sh; install this
package into the environment that pycaffe uses (the project's .venv).
"""
from setuptools import find_packages, setup

setup(
    name="psn-caffe",
    version="0.1.0",
    description="Parallel Spatiotemporal Network (PSN) for micro-expression recognition, in BVLC Caffe",
    python_requires=">=3.8",
    packages=find_packages(include=["preprocessing", "preprocessing.*", "psn", "psn.*", "synthetic",
                                    "synthetic.*"])
    + ["psn_layers"],
    package_dir={"psn_layers": "layers/psn_layers"},
    package_data={"preprocessing": ["data/*.csv"], "psn": ["data/*"]},
    install_requires=[
        line.split("#")[0].strip()
        for line in open("requirements.txt")
        if line.split("#")[0].strip()
    ],
    entry_points={
        "console_scripts": [
            "psn-preprocess=preprocessing.cli:main",
            "psn-make-synthetic=synthetic:main",
            "psn-make-nets=psn.nets:main",
            "psn-run-folds=psn.training:main",
            "psn-parse-log=psn.caffe_log:main",
            "psn-report=psn.report:main",
            "psn-predict=psn.predict:main",
        ]
    },
)
