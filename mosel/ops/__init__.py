"""The C++/CUDA extension's Python face: building and loading it (`extension`) and the fused
drop-and-pack / scatter ops with their pure-torch reference path (`batching`)."""
