// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "./Ownable.sol";

/// @notice Records contributions. A contribution is keyed by
/// keccak256(abi.encodePacked(data, label, addedTime, author)); because the key binds the label, the
/// time and the author, none of them is stored again, and the data vector itself lives only in the
/// trainer's AddData event. What remains fits one storage slot (the reference used about six),
/// which each handler reads and writes once as a whole word.
///
/// Gas: the owner-only handlers hash the sample's raw calldata words in one copy. For a well-formed
/// sample (each word a sign-extended int64, which the trainer checks before forwarding) these words
/// are exactly abi.encodePacked's padded elements, so the key equals `keyOf`.
contract DataHandler is Ownable {
    struct Contribution {
        uint104 initialDeposit;
        uint104 claimableAmount;
        uint24 numClaims;
        bool claimedByAuthor;
        bool exists;
    }

    mapping(bytes32 => Contribution) private contributions;
    /// Claims by addresses other than the author (the author's own claim is a bit in the record).
    mapping(bytes32 => mapping(address => bool)) private claimedBy;

    error DataMayAlreadyHaveBeenAdded(bytes32 key);
    error ContributionNotFound(bytes32 key);
    error DepositTooLarge(uint256 cost);
    error ClaimExceedsRemainder(uint256 amount, uint256 claimable);

    /// keccak256(abi.encodePacked(data, label, addedTime, author)); reverts on a malformed sample.
    function keyOf(int64[] calldata data, uint64 label, uint256 addedTime, address author)
        public
        pure
        returns (bytes32)
    {
        assembly {
            let p := data.offset
            for { let end := add(p, shl(5, data.length)) } lt(p, end) { p := add(p, 0x20) } {
                let w := calldataload(p)
                if iszero(eq(signextend(7, w), w)) { revert(0, 0) }
            }
        }
        return _key(data, label, addedTime, author);
    }

    function handleAddData(address author, uint256 cost, int64[] calldata data, uint64 label)
        external
        onlyOwner
        returns (uint256 time)
    {
        time = block.timestamp;
        bytes32 key = _key(data, label, time, author);
        uint256 slot = _slotOf(key);
        uint256 w = _load(slot);
        // An identical contribution in the same second reuses the key; allow it only once the old one
        // has been claimed and holds nothing.
        if (w & EXISTS != 0 && ((w >> CLAIMABLE_SHIFT) & AMOUNT != 0 || (w >> CLAIMS_SHIFT) & CLAIMS == 0)) {
            revert DataMayAlreadyHaveBeenAdded(key);
        }
        if (cost > AMOUNT) revert DepositTooLarge(cost);
        _store(slot, cost | (cost << CLAIMABLE_SHIFT) | EXISTS);
    }

    /// Returns the claimable amount, whether the author already claimed, and the claim count, all as they were before this claim.
    function handleRefund(address submitter, int64[] calldata data, uint64 label, uint256 addedTime)
        external
        onlyOwner
        returns (uint256 claimableAmount, bool claimedBySubmitter, uint256 numClaims)
    {
        bytes32 key = _key(data, label, addedTime, submitter);
        uint256 slot = _slotOf(key);
        uint256 w = _load(slot);
        if (w & EXISTS == 0) revert ContributionNotFound(key);
        claimableAmount = (w >> CLAIMABLE_SHIFT) & AMOUNT;
        claimedBySubmitter = w & AUTHOR_CLAIMED != 0;
        numClaims = (w >> CLAIMS_SHIFT) & CLAIMS;
        // remainder 0, author claimed, one more claim (uint24, as the struct field)
        w &= ~((AMOUNT << CLAIMABLE_SHIFT) | (CLAIMS << CLAIMS_SHIFT));
        _store(slot, w | AUTHOR_CLAIMED | (((numClaims + 1) & CLAIMS) << CLAIMS_SHIFT));
    }

    /// Returns the key and the deposit, remainder, reporter-claimed flag and claim count as they were before this claim.
    function handleReport(
        address reporter,
        int64[] calldata data,
        uint64 label,
        uint256 addedTime,
        address originalAuthor
    )
        external
        onlyOwner
        returns (
            bytes32 key,
            uint256 initialDeposit,
            uint256 claimableAmount,
            bool claimedByReporter,
            uint256 numClaims
        )
    {
        key = _key(data, label, addedTime, originalAuthor);
        uint256 slot = _slotOf(key);
        uint256 w = _load(slot);
        if (w & EXISTS == 0) revert ContributionNotFound(key);
        initialDeposit = w & AMOUNT;
        claimableAmount = (w >> CLAIMABLE_SHIFT) & AMOUNT;
        numClaims = (w >> CLAIMS_SHIFT) & CLAIMS;
        if (reporter == originalAuthor) {
            claimedByReporter = w & AUTHOR_CLAIMED != 0;
            w |= AUTHOR_CLAIMED;
        } else {
            // claimedBy[key][reporter]: its slot computed once for the read and the write.
            uint256 flag = _claimedBySlot(key, reporter);
            assembly {
                claimedByReporter := sload(flag)
                sstore(flag, 1)
            }
        }
        w &= ~(CLAIMS << CLAIMS_SHIFT);
        _store(slot, w | (((numClaims + 1) & CLAIMS) << CLAIMS_SHIFT));
    }

    function updateClaimableAmount(bytes32 key, uint256 paid) external onlyOwner {
        uint256 slot = _slotOf(key);
        uint256 w = _load(slot);
        uint256 claimable = (w >> CLAIMABLE_SHIFT) & AMOUNT;
        if (paid > claimable) revert ClaimExceedsRemainder(paid, claimable);
        _store(slot, (w & ~(AMOUNT << CLAIMABLE_SHIFT)) | ((claimable - paid) << CLAIMABLE_SHIFT));
    }

    // ---- the record as one word (the struct's own packing: first member in the lowest bits) -----

    uint256 private constant AMOUNT = (1 << 104) - 1;
    uint256 private constant CLAIMS = (1 << 24) - 1;
    uint256 private constant CLAIMABLE_SHIFT = 104;
    uint256 private constant CLAIMS_SHIFT = 208;
    uint256 private constant AUTHOR_CLAIMED = 1 << 232;
    uint256 private constant EXISTS = 1 << 240;

    function _slotOf(bytes32 key) private view returns (uint256 slot) {
        Contribution storage c = contributions[key];
        assembly {
            slot := c.slot
        }
    }

    /// The storage slot of claimedBy[key][claimer] (Solidity's layout of nested mappings).
    function _claimedBySlot(bytes32 key, address claimer) private pure returns (uint256 slot) {
        assembly {
            mstore(0x00, key)
            mstore(0x20, claimedBy.slot)
            mstore(0x20, keccak256(0x00, 0x40))
            mstore(0x00, claimer)
            slot := keccak256(0x00, 0x40)
        }
    }

    function _load(uint256 slot) private view returns (uint256 w) {
        assembly {
            w := sload(slot)
        }
    }

    function _store(uint256 slot, uint256 w) private {
        assembly {
            sstore(slot, w)
        }
    }

    /// keccak256(abi.encodePacked(data, label, addedTime, author)) over the raw calldata words.
    function _key(int64[] calldata data, uint64 label, uint256 addedTime, address author)
        private
        pure
        returns (bytes32 key)
    {
        assembly {
            let p := mload(0x40)
            let len := shl(5, data.length)
            calldatacopy(p, data.offset, len)
            let q := add(p, len)
            mstore(q, shl(192, label)) // 8 bytes
            mstore(add(q, 8), addedTime) // 32 bytes
            mstore(add(q, 40), shl(96, author)) // 20 bytes
            key := keccak256(p, add(len, 60))
        }
    }

    // ---- views -------------------------------------------------------------------------------

    function getContribution(bytes32 key)
        external
        view
        returns (uint256 initialDeposit, uint256 claimableAmount, uint256 numClaims, bool claimedByAuthor, bool exists)
    {
        Contribution memory c = contributions[key];
        return (c.initialDeposit, c.claimableAmount, c.numClaims, c.claimedByAuthor, c.exists);
    }

    function getClaimableAmount(int64[] calldata data, uint64 label, uint256 addedTime, address author)
        external
        view
        returns (uint256)
    {
        return contributions[keyOf(data, label, addedTime, author)].claimableAmount;
    }

    function getInitialDeposit(int64[] calldata data, uint64 label, uint256 addedTime, address author)
        external
        view
        returns (uint256)
    {
        return contributions[keyOf(data, label, addedTime, author)].initialDeposit;
    }

    function getNumClaims(int64[] calldata data, uint64 label, uint256 addedTime, address author)
        external
        view
        returns (uint256)
    {
        return contributions[keyOf(data, label, addedTime, author)].numClaims;
    }

    function hasClaimed(int64[] calldata data, uint64 label, uint256 addedTime, address author, address claimer)
        external
        view
        returns (bool)
    {
        bytes32 key = keyOf(data, label, addedTime, author);
        return claimer == author ? contributions[key].claimedByAuthor : claimedBy[key][claimer];
    }
}
