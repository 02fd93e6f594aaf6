# A tiny "application" the example farm deploys to every board before its tests.
VERSION = "1.2.0"


def checksum(data):
    total = 0
    for byte in data:
        total = (total * 31 + byte) % 65521
    return total
