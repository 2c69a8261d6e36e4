"""After the study: `cnnvit predict` on new images and `cnnvit export` to ONNX / TorchScript.

    images.py      the inputs: files, folders, npz; decoded as training decodes them
    resize.py      the input preprocessing in numpy (for ONNX Runtime, without torch)
    sidecar.py     a model's classes and preprocessing facts; the export sidecar JSON
    source.py      the MODEL argument: model directory, run directory + --model, .onnx file
    torch_model.py a model directory's checkpoint through the training pipeline
    onnx_model.py  an exported .onnx file through ONNX Runtime
    predict.py     `cnnvit predict`: batches → probabilities → CSV (+ overlays)
    export.py      `cnnvit export`: the file, its sidecar, the parity check
    demo_models.py `cnnvit demo`'s models and their answers to one image; upload checks
    demo_load.py   `cnnvit demo`: a run's models, accuracies and test samples, loaded once
    demo_app.py    `cnnvit demo`: the FastAPI page and its JSON twin, served by uvicorn

Importing this package (or predict.py, images.py, resize.py, sidecar.py, source.py,
onnx_model.py, demo_*.py) loads neither torch nor timm; torch_model.py and export.py do.
"""
