# tmrlx tasks. Extra arguments pass through: `just learner --batch-size 512`.
set positional-arguments

python := env_var_or_default("PYTHON", "python")

# list the recipes
default:
    @just --list

# route samples and weights between actors and the learner
broker *args:
    {{python}} -m tmrlx broker "$@"

# train on the samples the broker forwards
learner *args:
    {{python}} -m tmrlx learner "$@"

# step the environment and send samples
actor *args:
    {{python}} -m tmrlx actor "$@"

# broker + learner + 2 actors on localhost, training on the built-in simulator
demo *args:
    {{python}} -m tmrlx demo "$@"

# the whole test suite (slow tests included)
test *args:
    {{python}} -m pytest -q "$@"

# run a benchmark: just bench broker|learner|actor|sim|load
bench name *args:
    shift; {{python}} -m bench.{{name}} "$@"

# lint
lint:
    ruff check .

# type-check (mypy over the installed `tmrlx` layout)
typecheck:
    bash .ci/typecheck
