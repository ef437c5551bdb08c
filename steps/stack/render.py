"""The files the stack plan writes on the server, rendered from the Jinja templates beside this
module (``templates/``): the nginx site, the gunicorn unit and control script, ``db.env``.

A name a template uses and the caller did not give is an error (``StrictUndefined``), never an
empty string in a config file. Nothing is HTML-escaped: these are nginx, systemd and shell files,
their values are checked by :func:`aideploy.steps.stack.common.validate` first, and the control
script quotes each of its values for the shell with the ``q`` filter (``shlex.quote``). Blocks
eat the newline after them (``trim_blocks``) and a template's last newline is kept, so a template
reads like the file it makes.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from aideploy.steps.stack.common import q

if TYPE_CHECKING:
    import jinja2

TEMPLATES = Path(__file__).resolve().parent / "templates"


@functools.cache
def environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 - nginx, systemd and shell files, not HTML (see above)
        keep_trailing_newline=True,
        trim_blocks=True,
        auto_reload=False,
    )
    env.filters["q"] = q
    return env


def render(template: str, **values: object) -> str:
    """``templates/<template>`` with ``values``."""
    return environment().get_template(template).render(**values)
