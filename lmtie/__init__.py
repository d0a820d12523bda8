"""lmtie: reproducible companion of Inan, Khosravi & Socher (ICLR 2017).

*Tying Word Vectors and Word Classifiers: A Loss Framework for Language Modeling*.

Shape letters used in every docstring of the package:

- ``T``: bptt steps (time), ``B``: batch size, ``N = T * B``: tokens in a batch,
- ``V``: vocabulary size, ``D``: embedding dimension, ``H``: hidden size.

PyTorch's ``nn.Embedding.weight`` is ``(V, D)``: it stores **Lᵀ** of the paper (the paper's
``L`` has one word per column). ``nn.Linear(H, V).weight`` is ``(V, H)``: the paper's ``W``.
"""

__version__ = "0.1.0"
