"""`make bench`: sweeplab's speed as ratios against references run in the same process.

Usage: python -m sweeplab.bench [--quick] [--data-dir DIR] [--out DIR]
"""
