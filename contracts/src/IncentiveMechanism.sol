// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice What the trainer needs from an incentive mechanism.
interface IIncentiveMechanism {
    /// Returns the part of msgValue kept as deposit, and whether the model should be trained now.
    function handleAddData(uint256 msgValue, int64[] calldata data, uint64 classification)
        external
        returns (uint256 cost, bool train);

    function handleRefund(
        address submitter,
        uint64 classification,
        uint256 addedTime,
        uint256 claimableAmount,
        bool claimedBySubmitter,
        uint64 prediction,
        uint256 numClaims
    ) external returns (uint256 refundAmount);

    function handleReport(
        address reporter,
        uint64 classification,
        uint256 addedTime,
        address originalAuthor,
        uint256 initialDeposit,
        uint256 claimableAmount,
        bool claimedByReporter,
        uint64 prediction,
        uint256 numClaims
    ) external returns (uint256 rewardAmount);

    function getNextAddDataCost() external view returns (uint256);

    /// The price of an add made at `time` (chain seconds).
    function getNextAddDataCost(uint256 time) external view returns (uint256);

    /// Hook for data-dependent prices.
    function getNextAddDataCost(int64[] calldata data, uint64 classification) external view returns (uint256);

    /// Verified good contributions of an address.
    function numValidForAddress(address a) external view returns (uint256);
}
