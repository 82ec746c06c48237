"""Synthetic 3-D chains whose shape is a function of their sequence: the data of the pair-representation demo.

Sequences over four residue types are runs of 3-8 equal letters (like helices and strands); each type fixes the
local geometry of a C-alpha-like chain with bonds 3.8 A long (`BEND_DEG`, `TORSION_DEG`: H 91/50, E 123/-170,
T 80/-90, C 105/140 degrees), and `chain_coordinates` places the residues one after another (the natural
extension reference frame). Torsions follow the IUPAC sign (cis 0, trans 180 degrees). Limits: no excluded
volume (chains may pass through themselves), no noise; every chain of a call has the same length.
"""

import torch
import torch.nn.functional as F

from fmblocks.errors import DataError

RESIDUES = "HETC"
BEND_DEG = (91.0, 123.0, 80.0, 105.0)  # angle at residue i between the bonds to i-1 and i+1
TORSION_DEG = (50.0, -170.0, -90.0, 140.0)  # dihedral of i-1, i, i+1, i+2 (about the bond i -> i+1)
BOND = 3.8  # A, consecutive C-alpha atoms


def chain_coordinates(bend: torch.Tensor, torsion: torch.Tensor, bond: float = BOND) -> torch.Tensor:
    """Points (B, N, 3) of chains with bend angles (B, N-2) at residues 1..N-2 and torsions (B, N-3) about the
    bonds 1->2 .. N-3->N-2, in radians. Residue 0 at the origin, 1 on +x, 2 in the xy-plane (y > 0).

    Example: bends pi/2 and torsion 0 (planar, cis) give the square (0,0,0), (3.8,0,0), (3.8,3.8,0), (0,3.8,0);
    torsion pi (trans) puts the fourth point at (7.6, 3.8, 0), torsion pi/2 at (3.8, 3.8, 3.8).
    """
    batch, n = bend.shape[0], bend.shape[1] + 2
    if torsion.shape != (batch, max(n - 3, 0)):
        raise DataError(f"torsion must have shape ({batch}, {max(n - 3, 0)}) for bends {tuple(bend.shape)}, "
                        f"got {tuple(torsion.shape)}")
    points = [bend.new_zeros(batch, 3), bend.new_tensor([bond, 0.0, 0.0]).expand(batch, 3)]
    theta = bend[:, 0]  # the third point: bond from residue 1 at angle theta to the bond 1 -> 0
    points.append(points[1] + bond * torch.stack([-torch.cos(theta), torch.sin(theta), torch.zeros_like(theta)], -1))
    for i in range(3, n):
        a, b, c = points[i - 3], points[i - 2], points[i - 1]
        theta, phi = bend[:, i - 2], torsion[:, i - 3]  # the bend at c, the dihedral a-b-c-new
        bc = F.normalize(c - b, dim=-1)
        normal = F.normalize(torch.linalg.cross(b - a, bc, dim=-1), dim=-1)
        local = torch.stack([-torch.cos(theta), torch.sin(theta) * torch.cos(phi), torch.sin(theta) * torch.sin(phi)], -1)
        frame = torch.stack([bc, torch.linalg.cross(normal, bc, dim=-1), normal], -1)  # (B, 3, 3), columns
        points.append(c + bond * torch.einsum("bxk,bk->bx", frame, local))
    return torch.stack(points[:n], dim=1)


def random_sequences(n: int, length: int, *, generator: torch.Generator) -> torch.Tensor:
    """(n, length) residue types in 0..3, as runs of 3-8 equal types (a run never repeats the previous type)."""
    sequences = torch.empty(n, length, dtype=torch.long)
    for row in range(n):
        position, previous = 0, -1
        while position < length:
            kind = int(torch.randint(len(RESIDUES) - 1, (), generator=generator))
            kind += kind >= previous >= 0  # any type but the previous one
            run = int(torch.randint(3, 9, (), generator=generator))
            sequences[row, position:position + run] = kind
            position, previous = position + run, kind
    return sequences


def make_chains(n: int, length: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n seeded chains: sequences (n, L) long, coordinates (n, L, 3) and distances (n, L, L) float32, in A."""
    if n < 1 or length < 4:
        raise DataError(f"need n >= 1 chains of length >= 4, got n={n}, length={length}")
    sequences = random_sequences(n, length, generator=torch.Generator().manual_seed(seed))
    bend = torch.deg2rad(torch.tensor(BEND_DEG, dtype=torch.float64))[sequences[:, 1:-1]]
    torsion = torch.deg2rad(torch.tensor(TORSION_DEG, dtype=torch.float64))[sequences[:, 1:-2]]
    coordinates = chain_coordinates(bend, torsion)
    return sequences, coordinates.float(), torch.cdist(coordinates, coordinates).float()


def encode(text: str) -> torch.Tensor:
    """A sequence of H/E/T/C letters as (L,) residue types."""
    unknown = sorted(set(text) - set(RESIDUES))
    if unknown:
        raise DataError(f"unknown residue letters {unknown}; known: {', '.join(RESIDUES)}")
    return torch.tensor([RESIDUES.index(letter) for letter in text], dtype=torch.long)
