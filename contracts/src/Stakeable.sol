// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "./Ownable.sol";
import {IIncentiveMechanism} from "./IncentiveMechanism.sol";

/// @notice Deposit, Refund and Take: Self-Assessment.
/// The deposit is costWeight * 3600 / floor(sqrt(seconds since the last successful add)), so it is
/// highest right after anyone's contribution. The author gets the deposit back after refundWaitTimeS
/// if the model then agrees with the label; otherwise others may take it (proportionally to their own
/// verified contributions), the deployer after ownerClaimWaitTimeS, anyone after
/// anyAddressClaimWaitTimeS.
contract Stakeable is Ownable, IIncentiveMechanism {
    uint256 public immutable refundWaitTimeS;
    uint256 public immutable ownerClaimWaitTimeS;
    uint256 public immutable anyAddressClaimWaitTimeS;
    uint256 public immutable costWeight;
    /// The account that deployed the system. The component's owner is the trainer contract, which
    /// never reports, so the reference's owner branch could never fire; this address can.
    address public immutable modelOwner;

    // Packed into one slot: every add writes lastUpdateTime and totalSubmitted together.
    uint64 public lastUpdateTime;
    uint64 public totalSubmitted;
    uint128 public totalGoodDataCount;

    mapping(address => uint256) public numValid;

    event Refund(address recipient, uint256 amount);
    event Report(address recipient, uint256 amount);

    error WaitsOutOfOrder();
    error DidNotPayEnough(uint256 cost, uint256 paid);
    error AlreadyClaimed();
    error NothingLeftToClaim();
    error NotEnoughTimeHasPassed(uint256 elapsed, uint256 required);
    error ModelDisagrees(uint64 prediction, uint64 label);
    error ModelAgrees(uint64 prediction);
    error CannotTakeOwnDeposit();
    error NoVerifiedContributions(address reporter);

    constructor(
        uint256 refundWaitTimeS_,
        uint256 ownerClaimWaitTimeS_,
        uint256 anyAddressClaimWaitTimeS_,
        uint256 costWeight_
    ) {
        if (refundWaitTimeS_ > ownerClaimWaitTimeS_ || ownerClaimWaitTimeS_ > anyAddressClaimWaitTimeS_) {
            revert WaitsOutOfOrder();
        }
        refundWaitTimeS = refundWaitTimeS_;
        ownerClaimWaitTimeS = ownerClaimWaitTimeS_;
        anyAddressClaimWaitTimeS = anyAddressClaimWaitTimeS_;
        costWeight = costWeight_;
        modelOwner = msg.sender;
        lastUpdateTime = uint64(block.timestamp);
    }

    function numValidForAddress(address a) external view returns (uint256) {
        return numValid[a];
    }

    function getNextAddDataCost() public view returns (uint256) {
        return getNextAddDataCost(block.timestamp);
    }

    function getNextAddDataCost(uint256 time) public view returns (uint256) {
        if (costWeight == 0) return 0;
        uint256 last = lastUpdateTime;
        uint256 elapsed = time > last ? time - last : 0;
        if (elapsed == 0) elapsed = 1;
        return costWeight * 3600 / _sqrt(elapsed);
    }

    /// Hook for data-dependent prices; this mechanism's price depends on time only.
    function getNextAddDataCost(int64[] calldata, uint64) external view returns (uint256) {
        return getNextAddDataCost(block.timestamp);
    }

    function handleAddData(uint256 msgValue, int64[] calldata, uint64)
        external
        onlyOwner
        returns (uint256 cost, bool train)
    {
        cost = getNextAddDataCost(block.timestamp);
        if (msgValue < cost) revert DidNotPayEnough(cost, msgValue);
        lastUpdateTime = uint64(block.timestamp);
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
            uint256 reporterValid = numValid[reporter];
            if (reporterValid == 0) revert NoVerifiedContributions(reporter);
            rewardAmount = initialDeposit * reporterValid / totalGoodDataCount;
            if (rewardAmount == 0 || rewardAmount > claimableAmount) rewardAmount = claimableAmount;
        }
        emit Report(reporter, rewardAmount);
    }

    /// floor(sqrt(x)) by Newton's method from a power-of-two start above the root.
    function _sqrt(uint256 x) internal pure returns (uint256) {
        if (x < 2) return x;
        uint256 bits = 0;
        uint256 t = x;
        while (t > 0) {
            t >>= 2;
            bits += 1;
        }
        uint256 y = 1 << bits; // >= sqrt(x)
        uint256 z = (y + x / y) >> 1;
        while (z < y) {
            y = z;
            z = (y + x / y) >> 1;
        }
        return y;
    }
}
