"""Exhaustive repeat-oracle scan of the whole vocabulary (the ground truth; resumable).

    python analyses/glitch_ground_truth.py --work /tmp/glitch_scan [--shard 0/2]
"""

from interp.glitch.scan import main

if __name__ == "__main__":
    main()
