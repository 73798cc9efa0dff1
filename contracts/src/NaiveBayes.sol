// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "./Ownable.sol";
import {IClassifier} from "./Classifier.sol";

/// @notice Multinomial naive Bayes over sparse inputs: a sample lists the indices of its tokens (a
/// repeated index counts twice). Per class k: n_k samples, t_k token occurrences in total and
/// count_k[f] occurrences of feature f. alpha = smoothingFactor (scale 1e9; 1e9 is Laplace) and
/// V = vocabularySize.
///
/// predict: argmax_k  n_k * prod_{f in sample} (count_k[f] * 1e9 + alpha) / (t_k * 1e9 + alpha * V),
/// ties to the lower class, classes without samples never win (class 0 if none has any).
/// The reference multiplied plain integers and truncated at each step, so the product reached 0 after
/// a few features and every long input was class 0. Here the running product is a binary floating
/// point number m * 2^-e whose mantissa m stays in [2^128, 2^160): after each step
///     m = floor(m * (count * 1e9 + alpha) / (t_k * 1e9 + alpha * V)),
///     while m < 2^128: m <<= 32, e += 32,
/// starting from m = n_k (normalised the same way), e = 0. Each step truncates at most one unit of a
/// mantissa that is at least 2^(128-105) (the factor is at least 2^-105 under the bounds below) and
/// usually about 2^118, so the relative error per factor is below 2^-23 in the worst case and about
/// 2^-118 in practice: far below float64's, which scikit-learn's log-probabilities use. Because every
/// mantissa lies in [2^128, 2^160) and exponents are multiples of 32, the larger probability is the
/// one with the smaller e, or with the larger m when e is equal: an exact comparison.
/// Bounds that keep it in 256 bits: counts are uint32, t_k < 2^64, 0 < alpha < 2^64, V < 2^40.
///
/// update: n_k += 1, t_k += len(sample), count_k[f] += 1 for each listed f.
///
/// Gas: counts are uint32 lanes, eight per slot: features 4q..4q+3 of classes 2g and 2g+1 share the
/// slot COUNTS + (g << 128) + q, so with two classes one cold read serves both in predict. Class
/// records (n_k, t_k) live one per slot at CLASSES + k. The class count shares slot 0 with `owner`.
contract NaiveBayes is Ownable, IClassifier {
    uint256 private constant COUNTS = 0xdca3 << 240;
    uint256 private constant CLASSES = 0xdca4 << 240;
    uint256 private constant ONE = 1e9;
    uint256 private constant LANE = 0xffffffff;
    uint256 private constant FLOOR = 1 << 128;

    /// Packed with Ownable.owner in slot 0: update's owner check warms it for free.
    uint64 public numClasses;
    uint64 public immutable smoothingFactor;
    uint64 public immutable vocabularySize;

    string[] public classifications;

    event AddClass(string name, uint256 index);

    error BadClassification(uint64 classification);
    error BadParameter(string what);
    error FeatureOutOfRange(uint256 index);
    error CountOverflow(uint256 index);
    error LengthMismatch();
    error SlotAlreadySet(uint256 classGroup, uint256 featureGroup);

    constructor(string[] memory classifications_, uint64[] memory classCounts, uint64 vocabularySize_, uint64 smoothing)
    {
        if (smoothing == 0) revert BadParameter("smoothingFactor must be > 0");
        if (vocabularySize_ == 0 || vocabularySize_ >= 1 << 40) revert BadParameter("vocabularySize out of range");
        if (classifications_.length == 0 || classifications_.length != classCounts.length) revert LengthMismatch();
        smoothingFactor = smoothing;
        vocabularySize = vocabularySize_;
        for (uint256 i = 0; i < classifications_.length; ++i) {
            _addClass(classifications_[i], classCounts[i]);
        }
    }

    function getNumClassifications() external view returns (uint256) {
        return classifications.length;
    }

    /// A new class with `classCount` samples and no feature counts (set them with initializeCounts).
    function addClass(string calldata name, uint64 classCount) external onlyOwner {
        _addClass(name, classCount);
    }

    /// Deployment in chunks of whole packed slots of class group `classGroup` (classes 2g, 2g+1):
    /// words[i] holds the counts of features 4q..4q+3 (q = featureGroups[i]) in lanes
    /// 2 * (f - 4q) + (k - 2g), 32 bits each. Each count may be set once (a lane already set reverts,
    /// so a class added later can fill its lanes beside an older class's); the classes' totals grow
    /// by the counts written, so they always equal the sum of the counts.
    function initializeCounts(uint256 classGroup, uint256[] calldata featureGroups, uint256[] calldata words)
        external
        onlyOwner
    {
        if (featureGroups.length != words.length) revert LengthMismatch();
        uint256 k0 = 2 * classGroup;
        if (k0 >= numClasses) revert BadClassification(uint64(k0));
        uint256 added0 = 0;
        uint256 added1 = 0;
        uint256 limit = (uint256(vocabularySize) + 3) / 4;
        for (uint256 i = 0; i < words.length; ++i) {
            uint256 q = featureGroups[i];
            if (q >= limit) revert FeatureOutOfRange(4 * q);
            uint256 slot = COUNTS + (classGroup << 128) + q;
            uint256 old;
            assembly {
                old := sload(slot)
            }
            uint256 w = words[i];
            uint256 taken = 0; // the lanes this word sets
            for (uint256 lane = 0; lane < 8; ++lane) {
                uint256 count = (w >> (32 * lane)) & LANE;
                if (count == 0) continue;
                taken |= LANE << (32 * lane);
                if (lane & 1 == 0) added0 += count;
                else added1 += count;
            }
            if (old & taken != 0) revert SlotAlreadySet(classGroup, q);
            assembly {
                sstore(slot, or(old, w))
            }
        }
        if (added1 != 0 && k0 + 1 >= numClasses) revert BadClassification(uint64(k0 + 1));
        _addTotal(k0, added0);
        if (k0 + 1 < numClasses) _addTotal(k0 + 1, added1);
    }

    // ---- views -----------------------------------------------------------------------------------

    function classInfo(uint256 k) public view returns (uint64 numSamples, uint192 totalFeatureCount) {
        uint256 slot = CLASSES + k;
        uint256 word;
        assembly {
            word := sload(slot)
        }
        numSamples = uint64(word);
        totalFeatureCount = uint192(word >> 64);
    }

    function getFeatureCount(uint256 k, uint256 feature) external view returns (uint32) {
        uint256 slot = COUNTS + ((k >> 1) << 128) + (feature >> 2);
        uint256 shift = 32 * (2 * (feature & 3) + (k & 1));
        uint256 word;
        assembly {
            word := sload(slot)
        }
        return uint32(word >> shift);
    }

    /// Bulk read for twins: every class's (n_k, t_k).
    function getClassInfos() external view returns (uint64[] memory numSamples, uint256[] memory totals) {
        uint256 k = numClasses;
        numSamples = new uint64[](k);
        totals = new uint256[](k);
        for (uint256 i = 0; i < k; ++i) {
            (numSamples[i], totals[i]) = classInfo(i);
        }
    }

    /// Bulk read for twins: the packed count words of class group g, feature groups start..start+count-1.
    function getCountWords(uint256 classGroup, uint256 start, uint256 count) external view returns (uint256[] memory out) {
        out = new uint256[](count);
        uint256 slot = COUNTS + (classGroup << 128) + start;
        for (uint256 i = 0; i < count; ++i) {
            uint256 w;
            assembly {
                w := sload(add(slot, i))
            }
            out[i] = w;
        }
    }

    // ---- model -----------------------------------------------------------------------------------

    function predict(int64[] calldata data) external view returns (uint64 best) {
        uint256 k = numClasses;
        uint256 v = vocabularySize;
        _checkIndices(data, v);
        uint256 smoothV = uint256(smoothingFactor) * v;
        uint256 bestM = 0; // 0: no candidate yet (a real mantissa is >= 2^128)
        uint256 bestE = 0;
        for (uint256 c = 0; c < k; ++c) {
            (uint256 m, uint256 e) = _probability(data, c, smoothV);
            if (m == 0) continue;
            if (bestM == 0 || e < bestE || (e == bestE && m > bestM)) {
                bestM = m;
                bestE = e;
                best = uint64(c);
            }
        }
    }

    /// Class c's probability (up to a common factor) as m * 2^-e, m in [2^128, 2^160); m = 0 when the
    /// class has no samples. See the contract's comment for the formula.
    function _probability(int64[] calldata data, uint256 c, uint256 smoothV)
        private
        view
        returns (uint256 m, uint256 e)
    {
        (uint256 n, uint256 t) = classInfo(c);
        if (n == 0) return (0, 0);
        uint256 denominator = t * ONE + smoothV;
        uint256 alpha = smoothingFactor;
        uint256 base = COUNTS + ((c >> 1) << 128);
        uint256 odd = 32 * (c & 1);
        m = n;
        assembly {
            for {} lt(m, FLOOR) {} {
                m := shl(32, m)
                e := add(e, 32)
            }
            let p := data.offset
            for { let end := add(p, shl(5, data.length)) } lt(p, end) { p := add(p, 0x20) } {
                let f := calldataload(p)
                let count := and(shr(add(shl(6, and(f, 3)), odd), sload(add(base, shr(2, f)))), LANE)
                m := div(mul(m, add(mul(count, ONE), alpha)), denominator)
                for {} lt(m, FLOOR) {} {
                    m := shl(32, m)
                    e := add(e, 32)
                }
            }
        }
    }

    function update(int64[] calldata data, uint64 classification) external onlyOwner {
        if (classification >= numClasses) revert BadClassification(classification);
        uint256 v = vocabularySize;
        uint256 base = COUNTS + ((uint256(classification) >> 1) << 128);
        uint256 odd = 32 * (classification & 1);
        bool bad = false;
        uint256 feature;
        // The loop keeps nothing but its pointer: after a break, the failing index is read again.
        assembly {
            let p := data.offset
            let end := add(p, shl(5, data.length))
            for {} lt(p, end) { p := add(p, 0x20) } {
                let f := calldataload(p)
                // f >= v also rejects negative and malformed words (they are huge as uint256).
                if iszero(lt(f, v)) { break }
                let slot := add(base, shr(2, f))
                let shift := add(shl(6, and(f, 3)), odd)
                let word := sload(slot)
                if eq(and(shr(shift, word), LANE), LANE) { break }
                sstore(slot, add(word, shl(shift, 1)))
            }
            if lt(p, end) {
                bad := 1
                feature := calldataload(p)
            }
        }
        if (bad) {
            if (feature >= v) revert FeatureOutOfRange(feature);
            revert CountOverflow(feature);
        }
        uint256 cslot = CLASSES + classification;
        uint256 info;
        assembly {
            info := sload(cslot)
        }
        uint256 n = uint64(info) + 1;
        uint256 t = (info >> 64) + data.length;
        if (n > type(uint64).max || t > type(uint64).max) revert CountOverflow(type(uint256).max);
        assembly {
            sstore(cslot, or(n, shl(64, t)))
        }
    }

    // ---- internals -------------------------------------------------------------------------------

    function _addClass(string memory name, uint64 classCount) private {
        uint256 k = numClasses;
        classifications.push(name);
        uint256 slot = CLASSES + k;
        assembly {
            sstore(slot, classCount)
        }
        numClasses = uint64(k + 1);
        emit AddClass(name, k);
    }

    function _addTotal(uint256 k, uint256 added) private {
        if (added == 0) return;
        uint256 slot = CLASSES + k;
        uint256 info;
        assembly {
            info := sload(slot)
        }
        uint256 t = (info >> 64) + added;
        if (t > type(uint64).max) revert CountOverflow(type(uint256).max);
        assembly {
            sstore(slot, or(and(info, 0xffffffffffffffff), shl(64, t)))
        }
    }

    /// Every index must be a feature of the vocabulary (this also rejects negative or malformed words).
    function _checkIndices(int64[] calldata data, uint256 v) private pure {
        bool bad = false;
        uint256 feature;
        assembly {
            let p := data.offset
            for { let end := add(p, shl(5, data.length)) } lt(p, end) { p := add(p, 0x20) } {
                feature := calldataload(p)
                if iszero(lt(feature, v)) {
                    bad := 1
                    break
                }
            }
        }
        if (bad) revert FeatureOutOfRange(feature);
    }
}
