"""The preflight (`loraforge check`): is this machine ready to run loraforge?"""
