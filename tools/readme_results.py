#!/usr/bin/env python
"""Write the README's results table from docs/results/*.json (``--check``: only compare).

    python tools/readme_results.py            # rewrite the table in README.md
    python tools/readme_results.py --check    # exit 1 when README.md and the results disagree

The rows, and which file each reads, are in ``tools/bench/readme_table.py``.
"""
import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'tools' / 'bench'))
import readme_table  # noqa: E402  (tools/bench/readme_table.py)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--readme', default=str(REPO / 'README.md'))
    p.add_argument('--results', default=str(REPO / 'docs' / 'results'))
    p.add_argument('--check', action='store_true', help='compare only; exit 1 on a difference')
    args = p.parse_args(argv)
    readme = Path(args.readme)
    text = readme.read_text()
    table = readme_table.render(args.results)
    if readme_table.readme_section(text) == table:
        print(f'{readme}: the results table matches {args.results}')
        return 0
    if args.check:
        print(f'{readme}: the results table differs from {args.results}; run '
              'python tools/readme_results.py', file=sys.stderr)
        return 1
    readme.write_text(readme_table.splice(text, table))
    print(f'{readme}: results table rewritten from {args.results}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
