"""A Kubernetes client from a user's kubeconfig, or one line saying what is wrong with the file.

Shared by `apply` and the conformance suite: the `kubernetes` client turns a kubeconfig that is not YAML, not a
mapping, not UTF-8 or names a server that is not a URL into a TypeError, ValueError or a YAML error of its own.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import yaml
from kubernetes import client, config

from mmgitops.errors import ToolError


def api_client(kubeconfig: str | None, context: str | None = None) -> client.ApiClient:
    """The client for `kubeconfig` (default: $KUBECONFIG or ~/.kube/config) and `context`; ToolError, naming the
    file, for one it cannot use."""
    where = f"kubeconfig {kubeconfig or '$KUBECONFIG or ~/.kube/config'}"
    if kubeconfig and Path(kubeconfig).exists() and not Path(kubeconfig).is_file():
        # A named pipe would block the read for good, a directory fails in a way that names neither.
        raise ToolError(f"{where}: not a regular file")
    try:
        api = config.new_client_from_config(config_file=kubeconfig, context=context)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark else ""
        problem = str(getattr(error, "problem", None) or error).splitlines()[0]
        raise ToolError(f"{where}: not YAML{line}: {problem}") from None
    except UnicodeDecodeError:
        raise ToolError(f"{where}: not a text file (not UTF-8)") from None
    except (TypeError, AttributeError):
        raise ToolError(f"{where}: not a kubeconfig (expected a mapping with clusters, contexts and users)") from None
    except RecursionError:
        raise ToolError(f"{where}: not a kubeconfig (nested too deeply to read)") from None
    except (config.ConfigException, OSError, ValueError) as error:
        why = str(error).splitlines()[0] if str(error) else type(error).__name__
        hint = "" if kubeconfig else ": pass --kubeconfig FILE or set KUBECONFIG"
        raise ToolError(f"{where}: {why}{hint}") from None
    server = urlsplit(str(api.configuration.host))
    if server.scheme not in ("http", "https") or not server.hostname or " " in server.netloc:
        raise ToolError(f"{where}: server {api.configuration.host!r} is not a URL (https://HOST:PORT)")
    return api
