"""One module per product for `make demo`.

Each module defines:
  PRODUCT = "das"                      the simulator's name (python -m tests.simulators <PRODUCT>)
  GROUP = "das"                        the inventory group of its hosts in playbooks/rotate.yml
  SWITCHES = {...}                     simulator switches
  ADVANCE = 20 * 3600                  how far the simulator's clock stands behind at the first run; it then
                                       moves forward by as much, so that the product's tokens come due
  def prepare(sim, info)               optional: more state the demo needs (info is updated in place)
  def host_vars(info, store) -> dict   the demo host's variables; `info` is what the simulator's bootstrap
                                       returns (as in its info file), `store` the file store every product shares
  def environment(info) -> dict        credentials passed through the environment, never the command line
"""

ORDER = ["das", "dpa", "secretserver", "openpayments"]
