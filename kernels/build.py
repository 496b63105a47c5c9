"""Placeholder until this stage lands; replaced by the stage's implementation."""

from competition.errors import UserError


def configure(parser):
    pass


def main(args):
    raise UserError("this stage is not implemented yet")
