"""reftrace lint rules for the cellweave Nextflow pipeline (nf-core conventions).

Run by scripts/check_nextflow.py as `reftrace lint -r scripts/nextflow_lint_rules.py -d DIR`;
reftrace parses every .nf and .config file with its own Nextflow parser (a syntax error fails
the lint) and calls these rules on each parsed module / config file.
"""

from reftrace import ConfigFile, Module
from reftrace.linting import LintError, LintResults, configrule, rule

# nf-core's resource labels, plus the one that asks for a GPU (see the gpu profile).
RESOURCE_LABELS = {
    "process_single",
    "process_low",
    "process_medium",
    "process_high",
    "process_long",
    "process_high_memory",
}
EXTRA_LABELS = {"process_gpu"}


@rule
def one_resource_label(module: Module, results: LintResults):
    for process in module.processes:
        names = [lab.label for lab in process.labels]
        resource = [n for n in names if n in RESOURCE_LABELS]
        unknown = [n for n in names if n not in RESOURCE_LABELS | EXTRA_LABELS]
        if len(resource) != 1:
            results.errors.append(
                LintError(
                    line=process.line,
                    error=f"process '{process.name}' needs exactly one resource label "
                    f"({', '.join(sorted(RESOURCE_LABELS))}), has {resource}",
                )
            )
        if unknown:
            results.errors.append(
                LintError(line=process.line, error=f"process '{process.name}' has unknown labels {unknown}")
            )


@rule
def has_tag(module: Module, results: LintResults):
    for process in module.processes:
        if not process.tags:
            results.errors.append(
                LintError(line=process.line, error=f"process '{process.name}' has no tag directive")
            )


@rule
def tagged_container(module: Module, results: LintResults):
    for process in module.processes:
        if len(process.containers) != 1:
            results.errors.append(
                LintError(line=process.line, error=f"process '{process.name}' needs one container directive")
            )
        for c in process.containers:
            name = c.simple_name or ""
            if ":" not in name or name.endswith(":latest"):
                results.errors.append(
                    LintError(line=c.line, error=f"container '{name}' must carry a fixed version tag")
                )


@configrule
def params_in_closures(config: ConfigFile, results: LintResults):
    """Process directives that read params must be closures (evaluated per task, after -params-file)."""

    def check(directive):
        values = [directive.value] if directive.value else [o.value for o in directive.options]
        for v in values:
            if v.params and not v.in_closure:
                results.errors.append(
                    LintError(
                        line=directive.line_number,
                        error=f"directive '{directive.name}' reads params outside a closure",
                    )
                )

    for scope in config.process_scopes:
        for d in scope.directives:
            check(d)
        for named in scope.named_scopes:
            for d in named.directives:
                check(d)
