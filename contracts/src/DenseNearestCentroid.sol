// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "./Ownable.sol";
import {IClassifier} from "./Classifier.sol";

/// @notice Nearest centroid classifier over dense inputs. A sample is the full vector d (length
/// nFeatures, x * 1e9 rounded) with unit L2 norm (|sum d_i^2 - 1e18| < 1e11, else revert).
/// Per class k: centroid c_k (int64, scale 1e9) and n_k, the number of samples it averages.
///
/// predict: argmin_k sum_j floor((d_j - c_kj)^2 / 1e9), ties to the lower class. A class stops being
/// summed as soon as its partial sum reaches the best distance so far: the terms are never negative,
/// so it could only tie or lose, and a tie keeps the lower class; the answer never changes.
/// update: the running mean c_kj = (c_kj * n_k + d_j) / (n_k + 1), division truncated toward zero
/// (Solidity's signed division); then n_k += 1. Every contribution updates the model.
///
/// Gas: centroid values are int64 lanes, four per slot at CENTROIDS + (k << 64) + j / 4; the class
/// count shares slot 0 with `owner`; n_k lives at COUNTS + k; the dimension is an immutable.
contract DenseNearestCentroid is Ownable, IClassifier {
    uint256 private constant CENTROIDS = 0xdca5 << 240;
    uint256 private constant COUNTS = 0xdca8 << 240; // n_k at COUNTS + k
    uint256 private constant MASK = 0xffffffffffffffff; // 64 bits
    int256 private constant ONE = 1e9;
    int256 private constant ONE_SQUARED = 1e18;
    int256 private constant NORM_TOLERANCE = 1e11;

    /// Packed with Ownable.owner in slot 0.
    uint64 public numClasses;
    uint256 public immutable nFeatures;

    string[] public classifications;

    event AddClass(string name, uint256 index);

    error BadClassification(uint64 classification);
    error UnalignedChunk(uint256 startIndex);
    error ChunkOutOfRange(uint256 startIndex, uint256 length);
    error DimensionMismatch(uint256 length, uint256 expected);
    error NotUnitNorm(uint256 squaredNorm);
    error MalformedValue(uint256 index);
    error LengthMismatch();
    error CountOverflow();

    constructor(string[] memory classifications_, uint64[] memory dataCounts_, uint256 nFeatures_) {
        if (nFeatures_ == 0 || nFeatures_ > type(uint64).max) revert DimensionMismatch(nFeatures_, 1);
        if (classifications_.length == 0 || classifications_.length != dataCounts_.length) revert LengthMismatch();
        nFeatures = nFeatures_;
        for (uint256 i = 0; i < classifications_.length; ++i) {
            _addClass(classifications_[i], dataCounts_[i]);
        }
    }

    function getNumClassifications() external view returns (uint256) {
        return classifications.length;
    }

    /// A new class averaging `dataCount` samples; its centroid starts at zero (see initializeCentroid).
    function addClass(string calldata name, uint64 dataCount) external onlyOwner {
        _addClass(name, dataCount);
    }

    /// Deployment in chunks: centroid values of class k for dimensions start .. start+len-1; start is
    /// a multiple of 4 so whole slots are written without reading them first.
    function initializeCentroid(uint256 k, uint256 start, int64[] calldata values) external onlyOwner {
        if (k >= numClasses) revert BadClassification(uint64(k));
        uint256 n = values.length;
        if (start % 4 != 0) revert UnalignedChunk(start);
        if (start + n > nFeatures) revert ChunkOutOfRange(start, n);
        assembly {
            let slot := add(add(CENTROIDS, shl(64, k)), shr(2, start))
            for { let i := 0 } lt(i, n) { i := add(i, 4) } {
                let word := 0
                for { let j := 0 } and(lt(j, 4), lt(add(i, j), n)) { j := add(j, 1) } {
                    let v := calldataload(add(values.offset, shl(5, add(i, j))))
                    if iszero(eq(signextend(7, v), v)) { revert(0, 0) } // not an int64
                    word := or(word, shl(shl(6, j), and(v, MASK)))
                }
                sstore(slot, word)
                slot := add(slot, 1)
            }
        }
    }

    // ---- views -----------------------------------------------------------------------------------

    function centroidValue(uint256 k, uint256 j) public view returns (int64 c) {
        uint256 slot = CENTROIDS + (k << 64) + j / 4;
        uint256 shift = 64 * (j % 4);
        assembly {
            c := signextend(7, shr(shift, sload(slot)))
        }
    }

    /// Bulk read for twins: centroid k, dimensions start .. start+count-1.
    function getCentroid(uint256 k, uint256 start, uint256 count) external view returns (int64[] memory out) {
        out = new int64[](count);
        for (uint256 i = 0; i < count; ++i) {
            out[i] = centroidValue(k, start + i);
        }
    }

    function dataCounts(uint256 k) public view returns (uint64 n) {
        uint256 slot = COUNTS + k;
        assembly {
            n := sload(slot)
        }
    }

    function getDataCounts() external view returns (uint64[] memory out) {
        uint256 k = numClasses;
        out = new uint64[](k);
        for (uint256 i = 0; i < k; ++i) {
            out[i] = dataCounts(i);
        }
    }

    // ---- model -----------------------------------------------------------------------------------

    function predict(int64[] calldata data) external view returns (uint64 best) {
        _checkSample(data);
        uint256 k = numClasses;
        uint256 n = data.length;
        uint256 bestDistance = type(uint256).max;
        for (uint256 c = 0; c < k; ++c) {
            uint256 distance = 0;
            uint256 base = CENTROIDS + (c << 64);
            assembly {
                for { let i := 0 } lt(i, n) { i := add(i, 4) } {
                    let word := sload(add(base, shr(2, i)))
                    for { let j := 0 } and(lt(j, 4), lt(add(i, j), n)) { j := add(j, 1) } {
                        let diff := sub(calldataload(add(data.offset, shl(5, add(i, j)))), signextend(7, shr(shl(6, j), word)))
                        distance := add(distance, div(mul(diff, diff), ONE))
                    }
                    // Early stop: the rest can only add to it (see the contract's comment).
                    if iszero(lt(distance, bestDistance)) { break }
                }
            }
            if (distance < bestDistance) {
                bestDistance = distance;
                best = uint64(c);
            }
        }
    }

    function update(int64[] calldata data, uint64 classification) external onlyOwner {
        if (classification >= numClasses) revert BadClassification(classification);
        _checkSample(data);
        uint256 count = dataCounts(classification);
        if (count >= type(uint64).max) revert CountOverflow();
        uint256 n = data.length;
        uint256 base = CENTROIDS + (uint256(classification) << 64);
        assembly {
            let next := add(count, 1)
            for { let i := 0 } lt(i, n) { i := add(i, 4) } {
                let slot := add(base, shr(2, i))
                let word := sload(slot)
                let out := 0
                for { let j := 0 } and(lt(j, 4), lt(add(i, j), n)) { j := add(j, 1) } {
                    let shift := shl(6, j)
                    let c := signextend(7, shr(shift, word))
                    let d := calldataload(add(data.offset, shl(5, add(i, j))))
                    // A weighted mean of int64 values is an int64: no overflow check needed.
                    let mean := sdiv(add(mul(c, count), d), next)
                    out := or(out, shl(shift, and(mean, MASK)))
                }
                sstore(slot, out)
            }
        }
        uint256 countSlot = COUNTS + classification;
        assembly {
            sstore(countSlot, add(count, 1))
        }
    }

    // ---- internals -------------------------------------------------------------------------------

    function _addClass(string memory name, uint64 dataCount) private {
        uint256 k = numClasses;
        classifications.push(name);
        uint256 slot = COUNTS + k;
        assembly {
            sstore(slot, dataCount)
        }
        numClasses = uint64(k + 1);
        emit AddClass(name, k);
    }

    /// Length, int64 encoding and unit norm of a sample.
    function _checkSample(int64[] calldata data) private view {
        uint256 n = data.length;
        if (n != nFeatures) revert DimensionMismatch(n, nFeatures);
        int256 norm = 0;
        uint256 bad = type(uint256).max;
        assembly {
            for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                let d := calldataload(add(data.offset, shl(5, i)))
                if iszero(eq(signextend(7, d), d)) {
                    bad := i
                    break
                }
                norm := add(norm, mul(d, d))
            }
        }
        if (bad != type(uint256).max) revert MalformedValue(bad);
        int256 off = norm - ONE_SQUARED;
        if (off >= NORM_TOLERANCE || off <= -NORM_TOLERANCE) revert NotUnitNorm(uint256(norm));
    }
}
