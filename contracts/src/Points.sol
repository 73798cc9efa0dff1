// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "./Ownable.sol";
import {IIncentiveMechanism} from "./IncentiveMechanism.sol";

/// @notice Gamification ("karma"): no deposit, no ether ever moves. A contribution the model still
/// agrees with after refundWaitTimeS can be validated by its author ("refund"), which earns one point;
/// a contribution the model disagrees with can be reported by anyone else after the same wait, which
/// earns nothing but blocks the author's validation for good. Only the first claim on a contribution
/// counts (validation or report).
///
/// Score: numValid[a] / totalGoodDataCount (see `score`, fixed point 1e9, and `scoreFraction`).
///
/// Badges (bit mask from `badgesOf`, computed from the counters, never stored):
///   bit 0 BADGE_FIRST_CONTRIBUTION  the first validated contribution (numValid >= 1). The trainer does
///                                   not tell a mechanism who adds data, so a mere submission cannot be
///                                   attributed; the first badge is earned by the first validation.
///   bit 1 BADGE_VALIDATED_10        numValid >= 10
///   bit 2 BADGE_VALIDATED_100       numValid >= 100
///   bit 3 BADGE_VALIDATED_1000      numValid >= 1000
///   bit 4 BADGE_FIRST_REPORT        at least one successful report (numReports >= 1)
///
/// Events: `Refund(address recipient)` and `Report(address recipient)` carry no amount. They share
/// their names with Stakeable's `Refund(address,uint256)` / `Report(address,uint256)` but not their
/// signatures, so their topics differ: decode them with this contract's ABI.
/// `BadgeEarned(address indexed account, uint256 badge)` fires when a counter crosses a threshold.
contract Points is Ownable, IIncentiveMechanism {
    uint256 public constant BADGE_FIRST_CONTRIBUTION = 1 << 0;
    uint256 public constant BADGE_VALIDATED_10 = 1 << 1;
    uint256 public constant BADGE_VALIDATED_100 = 1 << 2;
    uint256 public constant BADGE_VALIDATED_1000 = 1 << 3;
    uint256 public constant BADGE_FIRST_REPORT = 1 << 4;

    uint256 public immutable refundWaitTimeS;
    uint256 public immutable ownerClaimWaitTimeS;
    uint256 public immutable anyAddressClaimWaitTimeS;

    // One slot: every add writes totalSubmitted, every validation totalGoodDataCount.
    uint64 public totalSubmitted;
    uint64 public totalReports;
    uint128 public totalGoodDataCount;

    mapping(address => uint256) public numValid;
    mapping(address => uint256) public numReports;

    event Refund(address recipient);
    event Report(address recipient);
    event BadgeEarned(address indexed account, uint256 badge);

    error WaitsOutOfOrder();
    error AlreadyClaimed();
    error EarlierClaimExists(uint256 numClaims);
    error NotEnoughTimeHasPassed(uint256 elapsed, uint256 required);
    error ModelDisagrees(uint64 prediction, uint64 label);
    error ModelAgrees(uint64 prediction);
    error CannotReportOwnContribution();

    constructor(uint256 refundWaitTimeS_, uint256 ownerClaimWaitTimeS_, uint256 anyAddressClaimWaitTimeS_) {
        if (refundWaitTimeS_ > ownerClaimWaitTimeS_ || ownerClaimWaitTimeS_ > anyAddressClaimWaitTimeS_) {
            revert WaitsOutOfOrder();
        }
        refundWaitTimeS = refundWaitTimeS_;
        ownerClaimWaitTimeS = ownerClaimWaitTimeS_;
        anyAddressClaimWaitTimeS = anyAddressClaimWaitTimeS_;
    }

    // ---- prices: always free ----------------------------------------------------------------------

    function getNextAddDataCost() external pure returns (uint256) {
        return 0;
    }

    function getNextAddDataCost(uint256) external pure returns (uint256) {
        return 0;
    }

    function getNextAddDataCost(int64[] calldata, uint64) external pure returns (uint256) {
        return 0;
    }

    // ---- trainer hooks (owner-only) -------------------------------------------------------------------

    /// Nothing is kept (the trainer returns any value sent); the model trains as usual.
    function handleAddData(uint256, int64[] calldata, uint64) external onlyOwner returns (uint256 cost, bool train) {
        totalSubmitted += 1;
        return (0, true);
    }

    /// Validation by the author: first claim on the contribution, wait passed, model agrees. Pays 0.
    function handleRefund(
        address submitter,
        uint64 classification,
        uint256 addedTime,
        uint256,
        bool claimedBySubmitter,
        uint64 prediction,
        uint256 numClaims
    ) external onlyOwner returns (uint256 refundAmount) {
        if (claimedBySubmitter) revert AlreadyClaimed();
        if (numClaims != 0) revert EarlierClaimExists(numClaims);
        uint256 elapsed = block.timestamp - addedTime;
        if (elapsed < refundWaitTimeS) revert NotEnoughTimeHasPassed(elapsed, refundWaitTimeS);
        if (prediction != classification) revert ModelDisagrees(prediction, classification);
        uint256 n = numValid[submitter] + 1;
        numValid[submitter] = n;
        totalGoodDataCount += 1;
        emit Refund(submitter);
        if (n == 1) emit BadgeEarned(submitter, BADGE_FIRST_CONTRIBUTION);
        else if (n == 10) emit BadgeEarned(submitter, BADGE_VALIDATED_10);
        else if (n == 100) emit BadgeEarned(submitter, BADGE_VALIDATED_100);
        else if (n == 1000) emit BadgeEarned(submitter, BADGE_VALIDATED_1000);
        return 0;
    }

    /// Report by someone else: wait passed, first claim on the contribution, model disagrees. Pays 0;
    /// the claim it records (in the data handler) blocks the author's validation for good.
    function handleReport(
        address reporter,
        uint64 classification,
        uint256 addedTime,
        address originalAuthor,
        uint256,
        uint256,
        bool claimedByReporter,
        uint64 prediction,
        uint256 numClaims
    ) external onlyOwner returns (uint256 rewardAmount) {
        uint256 elapsed = block.timestamp - addedTime;
        // The shortest of the three windows opens reporting; the later ones change nothing here.
        if (elapsed < refundWaitTimeS) revert NotEnoughTimeHasPassed(elapsed, refundWaitTimeS);
        if (claimedByReporter) revert AlreadyClaimed();
        if (numClaims != 0) revert EarlierClaimExists(numClaims);
        if (reporter == originalAuthor) revert CannotReportOwnContribution();
        if (prediction == classification) revert ModelAgrees(prediction);
        uint256 n = numReports[reporter] + 1;
        numReports[reporter] = n;
        totalReports += 1;
        emit Report(reporter);
        if (n == 1) emit BadgeEarned(reporter, BADGE_FIRST_REPORT);
        return 0;
    }

    // ---- views --------------------------------------------------------------------------------------

    function numValidForAddress(address a) external view returns (uint256) {
        return numValid[a];
    }

    /// numValid[a] / totalGoodDataCount as fixed point with scale 1e9 (floor); 0 before any validation.
    function score(address a) external view returns (uint256) {
        uint256 total = totalGoodDataCount;
        return total == 0 ? 0 : numValid[a] * 1e9 / total;
    }

    /// The exact score as (numerator, denominator).
    function scoreFraction(address a) external view returns (uint256 numerator, uint256 denominator) {
        return (numValid[a], totalGoodDataCount);
    }

    function badgesOf(address a) public view returns (uint256 mask) {
        uint256 v = numValid[a];
        if (v >= 1) mask |= BADGE_FIRST_CONTRIBUTION;
        if (v >= 10) mask |= BADGE_VALIDATED_10;
        if (v >= 100) mask |= BADGE_VALIDATED_100;
        if (v >= 1000) mask |= BADGE_VALIDATED_1000;
        if (numReports[a] >= 1) mask |= BADGE_FIRST_REPORT;
    }

    function hasBadge(address a, uint256 badge) external view returns (bool) {
        return badge != 0 && badgesOf(a) & badge == badge;
    }
}
