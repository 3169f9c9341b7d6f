"""``ini.py set FILE SECTION OPTION VALUE``: what devstack's iniset does."""

import configparser
import sys


def main(argv):
    _, path, section, option, value = argv
    parser = configparser.RawConfigParser()
    parser.optionxform = str
    parser.read(path)
    if section != "DEFAULT" and not parser.has_section(section):
        parser.add_section(section)
    parser.set(section, option, value)
    with open(path, "w") as f:
        parser.write(f)


if __name__ == "__main__":
    main(sys.argv[1:])
