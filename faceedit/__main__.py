"""``python -m faceedit`` runs the command-line interface."""

from faceedit.cli import main

if __name__ == "__main__":
    main()
