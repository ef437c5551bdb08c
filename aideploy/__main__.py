from __future__ import annotations

from aideploy.engine.cli import main

if __name__ == "__main__":
    main()
