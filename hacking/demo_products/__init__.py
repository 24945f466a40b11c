"""One module per product for `make demo`.

Each module defines:
  PRODUCT = "das"                      the simulator's CLI name (python -m tests.simulators <PRODUCT>)
  GROUP = "das"                        the inventory group its role's play in playbooks/demo.yml targets
  SIMULATOR_ARGS = ["--tls"]           extra arguments for the simulator
  def host_vars(info, store) -> dict   the demo host's variables; `info` is the simulator's info file,
                                       `store` the file store settings every product shares
  def environment(info) -> dict        credentials passed through the environment, never the command line
"""

ORDER = ["das", "dpa", "secretserver", "openpayments"]
