#!/usr/bin/env python
"""django-post-office side of ``bench/compare.py``; runs in bench/.venv-post-office only."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings_sqlite")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
