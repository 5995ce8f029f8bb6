"""The collection's own sanity check, what `ansible-test sanity
--test validate-modules` checks first (which needs network access here to
bootstrap its venv): every module's DOCUMENTATION, EXAMPLES and RETURN are
YAML, and the documented options are exactly the argument spec (names,
types, elements, required, defaults, choices).

Usage: python check_docs.py MODULE.py   (exit 1 and one line per problem)
"""

import importlib.util
import sys

import yaml


def load(path):
    spec = importlib.util.spec_from_file_location("module_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def problems(module):
    out = []
    doc = yaml.safe_load(module.DOCUMENTATION)
    yaml.safe_load(module.EXAMPLES)
    yaml.safe_load(module.RETURN)
    for key in ("module", "short_description", "description", "options", "author"):
        if key not in doc:
            out.append("DOCUMENTATION has no %s" % key)
    documented = doc.get("options", {})
    spec = module.ARGUMENT_SPEC
    for name in sorted(set(documented) | set(spec)):
        if name not in spec:
            out.append("option %s is documented but not in the argument spec" % name)
            continue
        if name not in documented:
            out.append("option %s is in the argument spec but not documented" % name)
            continue
        d, s = documented[name], spec[name]
        if not d.get("description"):
            out.append("option %s has no description" % name)
        for field, default in (("type", "str"), ("elements", None), ("required", False),
                               ("default", None), ("choices", None)):
            if d.get(field, default) != s.get(field, default):
                out.append("option %s: %s is %r in DOCUMENTATION but %r in the argument spec"
                           % (name, field, d.get(field, default), s.get(field, default)))
    return out


if __name__ == "__main__":
    found = problems(load(sys.argv[1]))
    for line in found:
        print(line)
    sys.exit(1 if found else 0)
