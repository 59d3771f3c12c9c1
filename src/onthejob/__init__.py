"""onthejob: on-the-job training for large language models.

    ojt --help
"""

__version__ = "0.1.0"
