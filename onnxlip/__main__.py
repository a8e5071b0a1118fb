"""``python -m onnxlip`` runs the CLI."""
from .cli import main

main()
