"""``python -m recsys_cl.config``: the names of the shipped configs, one a line."""

from recsys_cl.config.shipped import shipped_config_names

if __name__ == "__main__":
    print("\n".join(shipped_config_names()))
