"""`python -m webhook` runs the command line."""

from webhook.cli import main

main()
