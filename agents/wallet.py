"""A wallet: one key, a locally kept nonce, EIP-1559 fee pricing, local signing.

Several transactions may be in flight per wallet: the nonce advances locally at signing time and is
resynced from the chain only after an error that may have skipped or reused one.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.signing import LocalAccount, SignedTx, sign_eip1559


@dataclass(frozen=True)
class FeeStance:
    tip: int = 1_000_000_000  # maxPriorityFeePerGas, wei
    headroom: int = 3  # maxFeePerGas = headroom * base fee + tip
    cap: int | None = None  # never offer more than this maxFeePerGas
    floor: int | None = None  # offer at least this maxFeePerGas (a replacement must outbid the original)

    def price(self, base_fee: int) -> tuple[int, int]:
        max_fee = base_fee * self.headroom + self.tip
        if self.floor is not None:
            max_fee = max(max_fee, self.floor)
        if self.cap is not None:
            max_fee = min(max_fee, self.cap)
        return min(self.tip, max_fee), max_fee


class Wallet:
    def __init__(self, account: LocalAccount, chain_id: int):
        self.account = account
        self.address = account.address
        self.chain_id = chain_id
        self.nonce: int | None = None  # None: unknown, resync before the next send
        self.needs_resync = True

    def set_nonce(self, nonce: int) -> None:
        self.nonce = nonce
        self.needs_resync = False

    def invalidate_nonce(self) -> None:
        self.needs_resync = True

    def sign(
        self, *, to: bytes, data: bytes, value: int, gas: int, base_fee: int, fees: FeeStance
    ) -> tuple[SignedTx, int, int, int]:
        """Sign the next transaction. Returns (tx, nonce, maxPriorityFee, maxFee)."""
        if self.nonce is None or self.needs_resync:
            raise RuntimeError(f"wallet {self.address}: nonce unknown, resync first")
        nonce = self.nonce
        out = self.sign_at(nonce, to=to, data=data, value=value, gas=gas, base_fee=base_fee, fees=fees)
        self.nonce = nonce + 1
        return out

    def sign_at(
        self, nonce: int, *, to: bytes, data: bytes, value: int, gas: int, base_fee: int, fees: FeeStance
    ) -> tuple[SignedTx, int, int, int]:
        """Sign at a given nonce without moving the local one (a replacement)."""
        tip, max_fee = fees.price(base_fee)
        tx = sign_eip1559(
            self.account,
            chain_id=self.chain_id,
            nonce=nonce,
            max_priority_fee=tip,
            max_fee=max_fee,
            gas=gas,
            to=to,
            value=value,
            data=data,
        )
        return tx, nonce, tip, max_fee
