"""``python -m onnxlip`` runs the CLI."""
from .cli.app import main

main()
