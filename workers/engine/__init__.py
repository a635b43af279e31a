"""The deep-learning core: plain PyTorch, NumPy and imaging libraries.

Nothing here imports Django. Long work reports through a JobObserver
(see observer.py) that the caller supplies, so the same code runs inside a
Celery worker, a benchmark or a notebook.
"""
