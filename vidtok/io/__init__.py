"""Files the tokenizer reads and writes: videos, token files, tokenizer weights, auxiliary network weights.

* [`vidtok.io.video`][] - video files (PyAV) and frame <-> tensor conversion;
* [`vidtok.io.token_files`][] - latents / FSQ indices of one video with what is needed to decode them;
* [`vidtok.io.weight_files`][] - tokenizer weights: official Lightning ``.ckpt`` and safetensors, checked;
* [`vidtok.io.auxiliary_weights`][] - VGG16 (LPIPS) and I3D (FVD) weights: found locally or downloaded;
* [`vidtok.io.files`][] - the check they all make first (a non-empty file).

Training state (resume) is [`vidtok.training.checkpoints`][]; the Hub is [`vidtok.hub`][].
"""
