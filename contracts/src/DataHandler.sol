// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "./Ownable.sol";

/// @notice Records contributions. A contribution is keyed by
/// keccak256(abi.encodePacked(data, label, addedTime, author)); because the key binds the label, the
/// time and the author, none of them is stored again, and the data vector itself lives only in the
/// trainer's AddData event. What remains fits one storage slot (the reference used about six).
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

    function keyOf(int64[] calldata data, uint64 label, uint256 addedTime, address author)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encodePacked(data, label, addedTime, author));
    }

    function handleAddData(address author, uint256 cost, int64[] calldata data, uint64 label)
        external
        onlyOwner
        returns (uint256 time)
    {
        time = block.timestamp;
        bytes32 key = keyOf(data, label, time, author);
        Contribution storage c = contributions[key];
        // An identical contribution in the same second reuses the key; allow it only once the old one
        // has been claimed and holds nothing.
        if (c.exists && (c.claimableAmount != 0 || c.numClaims == 0)) revert DataMayAlreadyHaveBeenAdded(key);
        if (cost > type(uint104).max) revert DepositTooLarge(cost);
        contributions[key] = Contribution(uint104(cost), uint104(cost), 0, false, true);
    }

    /// Returns the claimable amount, whether the author already claimed, and the claim count, all as they were before this claim.
    function handleRefund(address submitter, int64[] calldata data, uint64 label, uint256 addedTime)
        external
        onlyOwner
        returns (uint256 claimableAmount, bool claimedBySubmitter, uint256 numClaims)
    {
        bytes32 key = keyOf(data, label, addedTime, submitter);
        Contribution storage c = contributions[key];
        if (!c.exists) revert ContributionNotFound(key);
        claimableAmount = c.claimableAmount;
        claimedBySubmitter = c.claimedByAuthor;
        numClaims = c.numClaims;
        c.claimableAmount = 0;
        c.claimedByAuthor = true;
        c.numClaims = uint24(numClaims + 1);
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
        key = keyOf(data, label, addedTime, originalAuthor);
        Contribution storage c = contributions[key];
        if (!c.exists) revert ContributionNotFound(key);
        initialDeposit = c.initialDeposit;
        claimableAmount = c.claimableAmount;
        numClaims = c.numClaims;
        if (reporter == originalAuthor) {
            claimedByReporter = c.claimedByAuthor;
            c.claimedByAuthor = true;
        } else {
            claimedByReporter = claimedBy[key][reporter];
            claimedBy[key][reporter] = true;
        }
        c.numClaims = uint24(numClaims + 1);
    }

    function updateClaimableAmount(bytes32 key, uint256 paid) external onlyOwner {
        Contribution storage c = contributions[key];
        uint256 claimable = c.claimableAmount;
        if (paid > claimable) revert ClaimExceedsRemainder(paid, claimable);
        c.claimableAmount = uint104(claimable - paid);
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
