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

    /// The deployment time: lastUpdateTime is stored as seconds since then.
    uint256 private immutable epoch;

    // These three share slot 0 with Ownable.owner (20 + 3 * 4 bytes). Every call's owner check reads
    // that slot anyway, so an add's price and counter, a refund's good-data count and a report's
    // total cost no further cold slot: one cold read and at most one write per call.
    // Bounds: 2^32 - 1 adds and validations (the counters revert beyond); add times up to 136 years
    // after deployment (an add later than that reverts with TimeOutOfRange).
    uint32 private lastUpdateOffset;
    uint32 private submitted;
    uint32 private goodDataCount;

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
    error TimeOutOfRange(uint256 time);
    error CountOverflow();

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
        epoch = block.timestamp;
        // handleAddData takes the owner from the word it reads for the price: keep them together.
        uint256 ownerSlot;
        uint256 ownerOffset;
        uint256 fieldsSlot;
        assembly {
            ownerSlot := owner.slot
            ownerOffset := owner.offset
            fieldsSlot := lastUpdateOffset.slot
        }
        assert(ownerSlot == fieldsSlot && ownerOffset == 0);
    }

    function lastUpdateTime() public view returns (uint64) {
        return uint64(epoch + lastUpdateOffset);
    }

    function totalSubmitted() external view returns (uint64) {
        return submitted;
    }

    function totalGoodDataCount() external view returns (uint128) {
        return goodDataCount;
    }

    function numValidForAddress(address a) external view returns (uint256) {
        return numValid[a];
    }

    function getNextAddDataCost() public view returns (uint256) {
        return getNextAddDataCost(block.timestamp);
    }

    function getNextAddDataCost(uint256 time) public view returns (uint256) {
        uint256 last = epoch + lastUpdateOffset;
        return _cost(time > last ? time - last : 0);
    }

    /// The deposit after `elapsed` seconds without an add (0 counts as 1).
    function _cost(uint256 elapsed) private view returns (uint256) {
        if (costWeight == 0) return 0;
        return costWeight * 3600 / _sqrt(elapsed == 0 ? 1 : elapsed);
    }

    /// Hook for data-dependent prices; this mechanism's price depends on time only.
    function getNextAddDataCost(int64[] calldata, uint64) external view returns (uint256) {
        return getNextAddDataCost(block.timestamp);
    }

    /// The owner check, the price and both updates use one read and one write of slot 0 (the
    /// compiler's code for the packed fields read it four times and wrote it twice).
    function handleAddData(uint256 msgValue, int64[] calldata, uint64) external returns (uint256 cost, bool train) {
        uint256 w;
        uint256 timeShift;
        uint256 countShift;
        assembly {
            w := sload(lastUpdateOffset.slot)
            timeShift := shl(3, lastUpdateOffset.offset)
            countShift := shl(3, submitted.offset)
        }
        if (msg.sender != address(uint160(w))) revert NotOwner(msg.sender);
        uint256 offset = block.timestamp - epoch;
        // time never runs backwards and every stored offset was a block's, so offset >= the last one
        cost = _cost(offset - ((w >> timeShift) & type(uint32).max));
        if (msgValue < cost) revert DidNotPayEnough(cost, msgValue);
        if (offset > type(uint32).max) revert TimeOutOfRange(block.timestamp);
        uint256 count = ((w >> countShift) & type(uint32).max) + 1;
        if (count > type(uint32).max) revert CountOverflow();
        w &= ~((uint256(type(uint32).max) << timeShift) | (uint256(type(uint32).max) << countShift));
        w |= (offset << timeShift) | (count << countShift);
        assembly {
            sstore(lastUpdateOffset.slot, w)
        }
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
        goodDataCount += 1;
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
            rewardAmount = initialDeposit * reporterValid / goodDataCount;
            if (rewardAmount == 0 || rewardAmount > claimableAmount) rewardAmount = claimableAmount;
        }
        emit Report(reporter, rewardAmount);
    }

    /// floor(sqrt(x)) by Newton's method from a power-of-two start above the root.
    function _sqrt(uint256 x) internal pure returns (uint256 y) {
        if (x < 2) return x;
        unchecked {
            uint256 bits = 0;
            for (uint256 t = x; t > 0; t >>= 2) ++bits;
            y = 1 << bits; // >= sqrt(x)
            uint256 z = (y + x / y) >> 1;
            while (z < y) {
                y = z;
                z = (y + x / y) >> 1;
            }
        }
    }
}
