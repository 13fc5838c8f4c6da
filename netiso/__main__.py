"""`python -m netiso`: the same entry point as the `netiso` console script."""

from netiso.cli import main

if __name__ == "__main__":
    main()
