"""Snakefiles of bench_peers.py's shapes, written to a fresh temporary folder per run.

The size comes in as ``--config size=N`` (Snakemake wants config keys of two or more
characters). Each rule's shell is ``true``; a dry run (``-n``) runs nothing.
"""

from __future__ import annotations

HEADER = '''\
N = int(config["size"])

wildcard_constraints:
    i=r"\\d+"

'''

SNAKEFILES = {
    # N independent jobs and one aggregate rule after all of them.
    "fan": HEADER + '''\
rule all:
    input: "gathered.txt"

rule fit:
    output: "fit/{i}.txt"
    shell: "true"

rule gather:
    input: expand("fit/{i}.txt", i=range(N))
    output: "gathered.txt"
    shell: "true"
''',
    # Job i needs job (i - 1) // 2: one edge each; the target names the leaves.
    "tree": HEADER + '''\
rule all:
    input: expand("t/{i}.txt", i=range(N // 2, N))

def parent(wildcards):
    i = int(wildcards.i)
    return [f"t/{(i - 1) // 2}.txt"] if i else []

rule step:
    input: parent
    output: "t/{i}.txt"
    shell: "true"
''',
    # N independent `true` jobs; touch() makes the output Snakemake requires of a job.
    "tasks": HEADER + '''\
rule all:
    input: expand("out/{i}", i=range(N))

rule noop:
    output: touch("out/{i}")
    shell: "true"
''',
}
