// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "./Ownable.sol";
import {IClassifier} from "./Classifier.sol";

/// @notice Nearest centroid classifier over sparse binary inputs: a sample lists the indices of its
/// present features (value 1), strictly increasing, each below nFeatures.
///
/// State per class k: n_k (samples averaged), the sums s_kj = 1e9 * (sum of feature j over those
/// samples) and q_k = sum_j s_kj^2. The centroid is c_kj = s_kj / n_k (scale 1e9), scaled lazily on
/// read, and |c_k|^2 = q_k / n_k^2 (scale 1e18): the "cached squared magnitude" rescales itself
/// through n_k, so an update touches only the listed features and nothing drifts.
///
/// predict: argmin_k |c_k - x|^2 = |c_k|^2 + 1e9 * sum_{j in x} (1e9 - 2 c_kj), ties to the lower
/// class. With L = len(x) and T_k = sum_{j in x} s_kj, multiplying by n_k^2 gives the integer
///     A_k = q_k + 1e18 * L * n_k^2 - 2e9 * n_k * T_k   (= n_k^2 * distance_k, scale 1e18),
/// and classes are compared exactly by cross-multiplication: A_k * n_b^2 < A_b * n_k^2. A class with
/// n_k = 0 has the zero centroid (its sums must be 0): A_k = 1e18 * L with n_k^2 taken as 1.
/// update: for each listed j: q_k += 2e9 * s_kj + 1e18, s_kj += 1e9; then n_k += 1. O(len(x)).
///
/// Gas: sums are uint64 lanes, four per slot: features 2q, 2q+1 of classes 2g, 2g+1 share the slot
/// SUMS + (g << 128) + q (lane 2 * (j - 2q) + (k - 2g)), so with two classes one cold read serves
/// both in predict. (n_k, q_k) share one slot per class at CLASSES + k. The class count shares slot 0
/// with `owner`.
contract SparseNearestCentroid is Ownable, IClassifier {
    uint256 private constant SUMS = 0xdca6 << 240;
    uint256 private constant CLASSES = 0xdca7 << 240;
    uint256 private constant LANE = 0xffffffffffffffff;
    uint256 private constant ONE = 1e9;
    uint256 private constant ONE_SQUARED = 1e18;
    /// n_k < 2^32 keeps predict's cross-multiplication below 2^256 (A_k < 2^165, n^2 < 2^64).
    uint256 private constant MAX_SAMPLES = 0xffffffff;

    /// Packed with Ownable.owner in slot 0.
    uint64 public numClasses;
    uint64 public immutable nFeatures;

    string[] public classifications;

    event AddClass(string name, uint256 index);

    error BadClassification(uint64 classification);
    error BadParameter(string what);
    error FeatureOutOfRange(uint256 index);
    error UnsortedIndices(uint256 position);
    error ValueOverflow();
    error LengthMismatch();
    error SlotAlreadySet(uint256 classGroup, uint256 featureGroup);

    constructor(string[] memory classifications_, uint64[] memory dataCounts_, uint64 nFeatures_) {
        if (nFeatures_ == 0 || nFeatures_ >= 1 << 40) revert BadParameter("nFeatures out of range");
        if (classifications_.length == 0 || classifications_.length != dataCounts_.length) revert LengthMismatch();
        nFeatures = nFeatures_;
        for (uint256 i = 0; i < classifications_.length; ++i) {
            _addClass(classifications_[i], dataCounts_[i]);
        }
    }

    function getNumClassifications() external view returns (uint256) {
        return classifications.length;
    }

    /// A new class averaging `dataCount` samples; its sums start at zero (see initializeSums).
    function addClass(string calldata name, uint64 dataCount) external onlyOwner {
        _addClass(name, dataCount);
    }

    /// Deployment in chunks of whole packed slots of class group g (classes 2g, 2g+1): words[i] holds
    /// the sums of features 2q, 2q+1 (q = featureGroups[i]). Each sum may be set once (a lane already
    /// set reverts); q_k grows by the squares written, so it always equals the sum of squares of the
    /// class's sums.
    function initializeSums(uint256 classGroup, uint256[] calldata featureGroups, uint256[] calldata words)
        external
        onlyOwner
    {
        if (featureGroups.length != words.length) revert LengthMismatch();
        uint256 k0 = 2 * classGroup;
        if (k0 >= numClasses) revert BadClassification(uint64(k0));
        uint256 squares0 = 0;
        uint256 squares1 = 0;
        uint256 limit = (uint256(nFeatures) + 1) / 2;
        for (uint256 i = 0; i < words.length; ++i) {
            uint256 q = featureGroups[i];
            if (q >= limit) revert FeatureOutOfRange(2 * q);
            uint256 slot = SUMS + (classGroup << 128) + q;
            uint256 old;
            assembly {
                old := sload(slot)
            }
            uint256 w = words[i];
            uint256 taken = 0; // the lanes this word sets
            for (uint256 lane = 0; lane < 4; ++lane) {
                uint256 value = (w >> (64 * lane)) & LANE;
                if (value == 0) continue;
                taken |= LANE << (64 * lane);
                if (lane & 1 == 0) squares0 += value * value;
                else squares1 += value * value;
            }
            if (old & taken != 0) revert SlotAlreadySet(classGroup, q);
            assembly {
                sstore(slot, or(old, w))
            }
        }
        if (squares1 != 0 && k0 + 1 >= numClasses) revert BadClassification(uint64(k0 + 1));
        _addSquares(k0, squares0);
        if (k0 + 1 < numClasses) _addSquares(k0 + 1, squares1);
    }

    // ---- views -----------------------------------------------------------------------------------

    function classInfo(uint256 k) public view returns (uint64 numSamples, uint192 sumOfSquares) {
        uint256 slot = CLASSES + k;
        uint256 word;
        assembly {
            word := sload(slot)
        }
        numSamples = uint64(word);
        sumOfSquares = uint192(word >> 64);
    }

    /// s_kj = 1e9 * (sum of feature j over class k's samples).
    function getSum(uint256 k, uint256 j) public view returns (uint64) {
        uint256 slot = SUMS + ((k >> 1) << 128) + (j >> 1);
        uint256 word;
        assembly {
            word := sload(slot)
        }
        return uint64(word >> (64 * (2 * (j & 1) + (k & 1))));
    }

    /// The centroid value c_kj = s_kj / n_k (scale 1e9, rounded down), scaled on read.
    function getCentroidValue(uint256 k, uint256 j) external view returns (uint256) {
        (uint64 n,) = classInfo(k);
        return n == 0 ? 0 : getSum(k, j) / n;
    }

    /// |c_k|^2 = q_k / n_k^2 (scale 1e18, rounded down).
    function getSquaredMagnitude(uint256 k) external view returns (uint256) {
        (uint64 n, uint192 q) = classInfo(k);
        return n == 0 ? 0 : uint256(q) / (uint256(n) * n);
    }

    function getClassInfos() external view returns (uint64[] memory numSamples, uint256[] memory sumsOfSquares) {
        uint256 k = numClasses;
        numSamples = new uint64[](k);
        sumsOfSquares = new uint256[](k);
        for (uint256 i = 0; i < k; ++i) {
            (numSamples[i], sumsOfSquares[i]) = classInfo(i);
        }
    }

    /// Bulk read for twins: the packed sum words of class group g, feature groups start..start+count-1.
    function getSumWords(uint256 classGroup, uint256 start, uint256 count) external view returns (uint256[] memory out) {
        out = new uint256[](count);
        uint256 slot = SUMS + (classGroup << 128) + start;
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
        _checkIndices(data);
        uint256 k = numClasses;
        uint256 bestA = 0;
        uint256 bestN2 = 0; // 0: no candidate yet
        for (uint256 c = 0; c < k; ++c) {
            (uint256 n, uint256 q) = classInfo(c);
            uint256 t = 0;
            uint256 base = SUMS + ((c >> 1) << 128);
            uint256 odd = 64 * (c & 1);
            assembly {
                let p := data.offset
                for { let end := add(p, shl(5, data.length)) } lt(p, end) { p := add(p, 0x20) } {
                    let j := calldataload(p)
                    t := add(t, and(shr(add(shl(7, and(j, 1)), odd), sload(add(base, shr(1, j)))), LANE))
                }
            }
            uint256 n2 = n == 0 ? 1 : n * n;
            // A >= 0: it is n^2 times a squared distance (exactly, since q is the sum of squares).
            uint256 a = q + ONE_SQUARED * data.length * n2 - 2 * ONE * n * t;
            if (bestN2 == 0 || a * bestN2 < bestA * n2) {
                bestA = a;
                bestN2 = n2;
                best = uint64(c);
            }
        }
    }

    function update(int64[] calldata data, uint64 classification) external onlyOwner {
        if (classification >= numClasses) revert BadClassification(classification);
        uint256 v = nFeatures;
        uint256 base = SUMS + ((uint256(classification) >> 1) << 128);
        uint256 odd = 64 * (classification & 1);
        uint256 total = 0; // sum over listed j of s_kj before the update
        bool bad = false;
        // One pass checks and writes (a separate check pass cost about 90 gas per index); on any
        // failure the whole call reverts, and _failUpdate reports the error a check-first pass would.
        assembly {
            let p := data.offset
            let lowest := 0 // the next index must be at least this (strictly increasing)
            for { let end := add(p, shl(5, data.length)) } lt(p, end) { p := add(p, 0x20) } {
                let j := calldataload(p)
                // j >= v also rejects negative and malformed words (they are huge as uint256).
                if or(iszero(lt(j, v)), lt(j, lowest)) {
                    bad := 1
                    break
                }
                lowest := add(j, 1)
                let slot := add(base, shr(1, j))
                let shift := add(shl(7, and(j, 1)), odd)
                let word := sload(slot)
                let s := and(shr(shift, word), LANE)
                if gt(s, sub(LANE, ONE)) {
                    bad := 1
                    break
                }
                total := add(total, s)
                sstore(slot, add(word, shl(shift, ONE)))
            }
        }
        if (bad) _failUpdate(data);
        uint256 cslot = CLASSES + classification;
        uint256 info;
        assembly {
            info := sload(cslot)
        }
        uint256 n = uint64(info) + 1;
        // q_k += sum over listed j of (2e9 * s_kj + 1e18); s_kj < 2^64, so nothing here wraps.
        uint256 q = (info >> 64) + 2 * ONE * total + ONE_SQUARED * data.length;
        if (n > MAX_SAMPLES || q > type(uint192).max) revert ValueOverflow();
        assembly {
            sstore(cslot, or(n, shl(64, q)))
        }
    }

    /// update's error: a bad index (the first, as _checkIndices finds it) before a sum overflow.
    function _failUpdate(int64[] calldata data) private view {
        _checkIndices(data);
        revert ValueOverflow();
    }

    // ---- internals -------------------------------------------------------------------------------

    function _addClass(string memory name, uint64 dataCount) private {
        if (dataCount > MAX_SAMPLES) revert ValueOverflow();
        uint256 k = numClasses;
        classifications.push(name);
        uint256 slot = CLASSES + k;
        assembly {
            sstore(slot, dataCount)
        }
        numClasses = uint64(k + 1);
        emit AddClass(name, k);
    }

    function _addSquares(uint256 k, uint256 added) private {
        if (added == 0) return;
        uint256 slot = CLASSES + k;
        uint256 info;
        assembly {
            info := sload(slot)
        }
        uint256 q = (info >> 64) + added;
        if (q > type(uint192).max) revert ValueOverflow();
        assembly {
            sstore(slot, or(and(info, LANE), shl(64, q)))
        }
    }

    /// Strictly increasing feature indices below nFeatures (also rejects negative or malformed words).
    function _checkIndices(int64[] calldata data) private view {
        uint256 v = nFeatures;
        uint256 bad = 0; // 0: fine, 1: feature out of range, 2: not strictly increasing
        uint256 at;
        assembly {
            let p := data.offset
            let prev := 0
            let i := 0
            for { let end := add(p, shl(5, data.length)) } lt(p, end) { p := add(p, 0x20) } {
                let j := calldataload(p)
                if iszero(lt(j, v)) {
                    bad := 1
                    at := j
                    break
                }
                if and(gt(i, 0), iszero(gt(j, prev))) {
                    bad := 2
                    at := i
                    break
                }
                prev := j
                i := add(i, 1)
            }
        }
        if (bad == 1) revert FeatureOutOfRange(at);
        if (bad == 2) revert UnsortedIndices(at);
    }
}
