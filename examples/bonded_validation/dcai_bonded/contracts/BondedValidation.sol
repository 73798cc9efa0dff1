// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

// The built-in sources compile in the same call as this plugin's: import them by source name.
import {Ownable} from "Ownable.sol";
import {IIncentiveMechanism} from "IncentiveMechanism.sol";

/// @notice Bonded validation: a game of fixed stakes. Every contribution posts the same bond (no price
/// that moves with time or with others' adds, unlike Stakeable). After refundWaitTimeS:
///   * validate ("refund"): the author gets the whole bond back if the model then agrees with the
///     label, and counts one validated contribution;
///   * challenge ("report"): while the model disagrees, any challenger other than the author that has
///     at least one validated contribution of its own takes a fixed bounty of challengeShareBps of the
///     bond, once per contribution, until the bond is used up (so a wrong contribution costs its author
///     a known amount per challenger, whatever the challengers' records);
///   * the deployer takes what is left after ownerClaimWaitTimeS, anyone after anyAddressClaimWaitTimeS.
/// The bond stays in the trainer until claimed: the trainer's balance is always the sum of what is left.
contract BondedValidation is Ownable, IIncentiveMechanism {
    uint256 public constant BPS = 10_000;

    uint256 public immutable refundWaitTimeS;
    uint256 public immutable ownerClaimWaitTimeS;
    uint256 public immutable anyAddressClaimWaitTimeS;
    uint256 public immutable bond;
    uint256 public immutable challengeShareBps;
    /// The account that deployed the system (the components' owner is the trainer, which never claims).
    address public immutable modelOwner;

    uint64 public totalSubmitted;
    uint64 public totalChallenges;
    uint128 public totalGoodDataCount;

    mapping(address => uint256) public numValid;
    mapping(address => uint256) public numChallenges;

    event Refund(address recipient, uint256 amount);
    event Report(address recipient, uint256 amount);

    error WaitsOutOfOrder();
    error BadShare(uint256 shareBps);
    error DidNotPayEnough(uint256 cost, uint256 paid);
    error AlreadyClaimed();
    error NothingLeftToClaim();
    error NotEnoughTimeHasPassed(uint256 elapsed, uint256 required);
    error ModelDisagrees(uint64 prediction, uint64 label);
    error ModelAgrees(uint64 prediction);
    error CannotTakeOwnDeposit();
    error NoValidatedContributions(address challenger);

    constructor(
        uint256 refundWaitTimeS_,
        uint256 ownerClaimWaitTimeS_,
        uint256 anyAddressClaimWaitTimeS_,
        uint256 bond_,
        uint256 challengeShareBps_
    ) {
        if (refundWaitTimeS_ > ownerClaimWaitTimeS_ || ownerClaimWaitTimeS_ > anyAddressClaimWaitTimeS_) {
            revert WaitsOutOfOrder();
        }
        if (challengeShareBps_ == 0 || challengeShareBps_ > BPS) revert BadShare(challengeShareBps_);
        refundWaitTimeS = refundWaitTimeS_;
        ownerClaimWaitTimeS = ownerClaimWaitTimeS_;
        anyAddressClaimWaitTimeS = anyAddressClaimWaitTimeS_;
        bond = bond_;
        challengeShareBps = challengeShareBps_;
        modelOwner = msg.sender;
    }

    function numValidForAddress(address a) external view returns (uint256) {
        return numValid[a];
    }

    function getNextAddDataCost() external view returns (uint256) {
        return bond;
    }

    function getNextAddDataCost(uint256) external view returns (uint256) {
        return bond;
    }

    function getNextAddDataCost(int64[] calldata, uint64) external view returns (uint256) {
        return bond;
    }

    function handleAddData(uint256 msgValue, int64[] calldata, uint64)
        external
        onlyOwner
        returns (uint256 cost, bool train)
    {
        cost = bond;
        if (msgValue < cost) revert DidNotPayEnough(cost, msgValue);
        totalSubmitted += 1;
        train = true;
    }

    function handleRefund(
        address submitter,
        uint64 classification,
        uint256 addedTime,
        uint256 claimableAmount,
        bool claimedBySubmitter,
        uint64 prediction,
        uint256
    ) external onlyOwner returns (uint256 refundAmount) {
        if (claimedBySubmitter) revert AlreadyClaimed();
        if (claimableAmount == 0) revert NothingLeftToClaim();
        uint256 elapsed = block.timestamp - addedTime;
        if (elapsed < refundWaitTimeS) revert NotEnoughTimeHasPassed(elapsed, refundWaitTimeS);
        if (prediction != classification) revert ModelDisagrees(prediction, classification);
        numValid[submitter] += 1;
        totalGoodDataCount += 1;
        // The data handler zeroes the remainder on a refund: pay all of it.
        refundAmount = claimableAmount;
        emit Refund(submitter, refundAmount);
    }

    function handleReport(
        address reporter,
        uint64 classification,
        uint256 addedTime,
        address originalAuthor,
        uint256 initialDeposit,
        uint256 claimableAmount,
        bool claimedByReporter,
        uint64 prediction,
        uint256
    ) external onlyOwner returns (uint256 rewardAmount) {
        if (claimableAmount == 0) revert NothingLeftToClaim();
        uint256 elapsed = block.timestamp - addedTime;
        if (elapsed >= ownerClaimWaitTimeS && reporter == modelOwner) {
            rewardAmount = claimableAmount;
        } else if (elapsed >= anyAddressClaimWaitTimeS) {
            rewardAmount = claimableAmount;
        } else {
            if (reporter == originalAuthor) revert CannotTakeOwnDeposit();
            if (claimedByReporter) revert AlreadyClaimed();
            if (elapsed < refundWaitTimeS) revert NotEnoughTimeHasPassed(elapsed, refundWaitTimeS);
            if (prediction == classification) revert ModelAgrees(prediction);
            if (numValid[reporter] == 0) revert NoValidatedContributions(reporter);
            rewardAmount = initialDeposit * challengeShareBps / BPS;
            if (rewardAmount == 0 || rewardAmount > claimableAmount) rewardAmount = claimableAmount;
            numChallenges[reporter] += 1;
            totalChallenges += 1;
        }
        emit Report(reporter, rewardAmount);
    }
}
